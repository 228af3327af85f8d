import pytest
import torch


@pytest.fixture(autouse=True)
def float64():
    """GAN tests compare against closed forms to 1e-6 and below: run them in float64, then restore."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)

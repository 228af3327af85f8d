import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    """Model tests use tiny tensors: one torch thread is faster, and far faster on a
    busy machine (where idle OpenMP threads spin against other processes)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

"""onet.utils.io: atomic writes keep the folder clean and respect the umask (issue 12)."""

import os
import stat

import pytest

from onet.utils.io import savez_atomic, write_text_atomic


@pytest.fixture
def umask():
    def set_mask(mask):
        os.umask(mask)
    old = os.umask(0o022)
    os.umask(old)
    yield set_mask
    os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_outputs_get_the_mode_of_the_umask_not_0600(tmp_path, umask, mask, mode):
    umask(mask)
    write_text_atomic(tmp_path / "table.csv", "a,b\n")
    savez_atomic(tmp_path / "points.npz", x=__import__("numpy").zeros(3))
    for name in ("table.csv", "points.npz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["points.npz", "table.csv"]

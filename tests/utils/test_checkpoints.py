"""onet.utils.checkpoints: a full disk is named in plain words, never torch's internal message (issue 12)."""

import errno
import io
import os

import pytest
import torch

import onet.utils.checkpoints as checkpoints
from onet.utils.checkpoints import load_checkpoint, save_checkpoint


class _FullDisk(io.RawIOBase):
    """A file on a disk with `room` bytes left: short writes, then ENOSPC (what write(2) does)."""

    def __init__(self, f, room: int):
        self.f, self.room = f, room

    def writable(self):
        return True

    def write(self, b):
        if self.room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = min(len(b), self.room)
        self.f.write(bytes(memoryview(b)[:n]))
        self.room -= n
        return n

    def close(self):
        self.f.close()
        super().close()


def test_full_disk_while_saving_says_no_space_and_names_the_file(tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    save_checkpoint(path, model={"w": torch.ones(3)}, it=1)
    real_open = open

    def full_open(p, mode="r", *args, **kwargs):
        f = real_open(p, mode, *args, **kwargs)
        return _FullDisk(f, room=100) if "w" in mode else f  # unbuffered: torch meets the short write itself

    monkeypatch.setattr(checkpoints, "open", full_open, raising=False)
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    with pytest.raises(OSError) as err:
        save_checkpoint(path, model={"w": torch.zeros(10000)}, it=2)
    assert err.value.errno == errno.ENOSPC
    assert "No space left on device" in str(err.value) and str(path) in str(err.value)
    assert "enforce fail" not in str(err.value) and ".tmp" not in str(err.value)
    monkeypatch.undo()
    assert load_checkpoint(path)["it"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]

"""onet.utils.checkpoints: a full disk is named in plain words, never torch's internal message (issue 12);
per-rank RNG states are saved per process and restored where they exist (issue 19, CPU only here)."""

import errno
import io
import os
import random

import numpy as np
import pytest
import torch

import onet.utils.checkpoints as checkpoints
from onet.utils.checkpoints import (
    load_checkpoint,
    rank_rng_state,
    rng_state,
    save_checkpoint,
    select_cuda_state,
    set_rng_state,
)


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


def _draw() -> tuple:
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)]


def test_rng_state_round_trip_on_cpu():
    torch.manual_seed(5)
    state = rng_state("cpu")
    assert "cuda" not in state  # a CPU process owns no GPU stream
    first = _draw()
    assert set_rng_state(state, "cpu") == []
    assert _draw() == first


def test_legacy_state_with_more_gpus_than_this_machine_restores_the_cpu_streams():
    """An old checkpoint stored every GPU of its node (4 here); this machine has none: no IndexError."""
    torch.manual_seed(1)
    state = rng_state("cpu")
    state["cuda"] = [torch.full((16,), i, dtype=torch.uint8) for i in range(4)]
    first = _draw()
    notes = set_rng_state(state, "cpu")
    assert _draw() == first
    assert len(notes) == 1 and "CUDA random state was not restored" in notes[0]


def test_select_cuda_state_takes_the_own_gpu_or_nothing():
    saved = [torch.full((16,), i, dtype=torch.uint8) for i in range(4)]
    assert torch.equal(select_cuda_state(saved, 2), saved[2])
    assert select_cuda_state(saved, 4) is None  # saved on a 4-GPU node, restored on GPU 4 of a bigger one
    assert select_cuda_state(saved[:1], 0) is saved[0]  # fewer states saved than GPUs seen
    own = torch.full((16,), 7, dtype=torch.uint8)
    assert select_cuda_state(own, 5) is own  # this format: the process's own GPU, whatever its index


def test_rank_rng_state_with_fewer_ranks_saved_than_running():
    states = [{"rank": 0}, {"rank": 1}]
    assert rank_rng_state(states, 1) == {"rank": 1}
    assert rank_rng_state(states, 2) is None  # a 3-process resume of a 2-process run
    legacy = {"rank": 0}
    assert rank_rng_state(legacy, 0) is legacy
    assert rank_rng_state(legacy, 1) is None  # rank 0's streams are never handed to rank 1


@pytest.mark.parametrize("saved", ["list", "legacy"])
def test_resume_restores_rank_zeros_streams(tiny_cfg, saved):
    """Train, rewrite the checkpoint's RNG as a longer per-rank list or the legacy dict with a
    4-GPU CUDA list, resume in one CPU process: it continues, using rank 0's state."""
    from onet.training import train

    train(tiny_cfg, device="cpu", progress=False, log=lambda *a: None)
    path = tiny_cfg["out_dir"] + "/model.pt"
    ckpt = load_checkpoint(path)
    assert isinstance(ckpt["rng"], list) and len(ckpt["rng"]) == 1
    own = ckpt["rng"][0]
    if saved == "list":
        other = dict(own, torch=torch.zeros_like(own["torch"]))
        ckpt["rng"] = [own, other, other]
    else:
        ckpt["rng"] = dict(own, cuda=[torch.zeros(16, dtype=torch.uint8)] * 4)
    save_checkpoint(path, **ckpt)
    tiny_cfg["train"]["max_iters"] = 5
    messages = []
    result = train(tiny_cfg, device="cpu", progress=False, log=messages.append)
    assert result.iterations == 5
    assert any("resuming" in m for m in messages)
    assert any("CUDA random state was not restored" in m for m in messages) == (saved == "legacy")

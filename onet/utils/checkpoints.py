"""Checkpoints: written atomically, loadable on any device, self-describing.

A checkpoint holds the model and optimizer state, the iteration, epoch, best
validation metric, the resolved config (whose `model` section rebuilds the
network) and the RNG states, so `onet train` on an existing out_dir resumes
where it stopped and `onet generate` needs nothing but the file.
"""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import numpy as np
import torch

from onet.utils.io import atomic_path


class CheckpointError(RuntimeError):
    """A checkpoint file is missing or unreadable; the message names it."""


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def save_checkpoint(path: str | Path, **state) -> None:
    """torch.save to a temporary file, fsync, then rename: a crash never leaves a torn checkpoint.

    The bytes are serialised in memory first and written by Python, so a full disk
    is an OSError naming `path` ("No space left on device"), not torch's
    "[enforce fail at inline_container.cc]".
    """
    buf = io.BytesIO()
    torch.save(state, buf)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            view = buf.getbuffer()
            while view:  # a short write (disk filling up) leaves the rest; the next write says ENOSPC
                view = view[f.write(view):]
            f.flush()
            os.fsync(f.fileno())


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path} (train a model first with `onet train`)")
    try:
        # weights_only=False: checkpoints also hold numpy RNG state and the config.
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None

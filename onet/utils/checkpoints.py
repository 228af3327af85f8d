"""Checkpoints: written atomically, loadable on any device, self-describing.

A checkpoint holds the model and optimizer state, the iteration, epoch, best
validation metric, the resolved config (whose `model` section rebuilds the
network), the GradScaler state and every rank's RNG states, so `onet train`
on an existing out_dir resumes where it stopped and `onet generate` needs
nothing but the file.
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


def rng_state(device: str | torch.device | None = None) -> dict:
    """This process's random streams: torch (CPU), NumPy, Python, and the CUDA generator of
    `device` when it is a CUDA device (the process's own GPU only, never the whole node's)."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    device = None if device is None else torch.device(device)
    if device is not None and device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        state["cuda"] = torch.cuda.get_rng_state(index)
    return state


def rank_rng_state(saved, rank: int) -> dict | None:
    """The RNG state rank `rank` saved, from a checkpoint's `rng` entry; None when it holds none.

    saved: a list with one state per rank (index = rank), or one state (older checkpoints,
    written by rank 0 alone: it belongs to rank 0 and no other rank).
    """
    if isinstance(saved, dict):
        return saved if rank == 0 else None
    if isinstance(saved, (list, tuple)) and 0 <= rank < len(saved):
        return saved[rank]
    return None


def select_cuda_state(saved_cuda, device_index: int) -> torch.Tensor | None:
    """The CUDA generator state for GPU `device_index` out of a saved `cuda` entry.

    saved_cuda: one state (this format: the saving process's own GPU) or a list with one
    state per GPU of the saving node (older checkpoints); a machine that sees fewer GPUs
    than were saved restores its own and ignores the rest (None: nothing saved for it).
    """
    if isinstance(saved_cuda, torch.Tensor):
        return saved_cuda
    if isinstance(saved_cuda, (list, tuple)) and 0 <= device_index < len(saved_cuda):
        return saved_cuda[device_index]
    return None


def set_rng_state(state: dict, device: str | torch.device | None = None) -> list[str]:
    """Restore the streams of `state` that exist here; returns what could not be restored.

    The CUDA state goes to `device`'s generator only (each process owns one GPU); on a
    CPU run, or when no state was saved for this GPU, the CUDA stream keeps its seed.
    """
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    notes = []
    if "cuda" not in state:
        return notes
    device = None if device is None else torch.device(device)
    if device is None or device.type != "cuda":
        notes.append("the checkpoint's CUDA random state was not restored (this run is not on a GPU)")
        return notes
    index = device.index if device.index is not None else torch.cuda.current_device()
    cuda = select_cuda_state(state["cuda"], index)
    if cuda is None:
        notes.append(f"the checkpoint holds no CUDA random state for GPU {index}; it keeps its seeded stream")
    else:
        torch.cuda.set_rng_state(cuda.cpu(), device=index)
    return notes


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


def inference_weights(state: dict) -> dict:
    """The weights a trained model is used with: the moving average where the run kept one
    (train.ema_decay > 0: what validation scored and model_best.pt was chosen by), else the
    trained weights. `state["model"]` stays the optimiser's weights, which a resume continues."""
    ema = state.get("model_ema")
    return ema if isinstance(ema, dict) else state["model"]

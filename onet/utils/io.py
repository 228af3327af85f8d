"""Atomic file output: every file onet writes appears complete or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Iterator

import numpy as np


class OutputWriteError(OSError):
    """An output file could not be written (full disk, read-only or missing folder, no permission).

    The message names the file the caller asked for, never the hidden temporary.
    Batch verbs stop on it (`onet.utils.batch`): the next item would fail alike.
    """


_UMASK_LOCK = threading.Lock()


def file_mode() -> int:
    """The mode a plain open() would give a new file: 0o666 less the process umask.

    mkstemp creates 0600 files whatever the umask; outputs must be as readable as
    any other file the user writes (datasets and checkpoints on shared machines).
    """
    with _UMASK_LOCK:  # reading the umask means setting it; keep other threads out meanwhile
        umask = os.umask(0o077)
        os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` on success.

    The temporary file lives in the same folder so the final `os.replace` is
    atomic. On any exception the temporary file is removed and `path` is left
    as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    except OSError as exc:  # e.g. a read-only folder: name the file the user asked for
        raise OutputWriteError(exc.errno, exc.strerror, str(path)) from exc
    os.close(fd)
    tmp = Path(tmp)
    try:
        os.chmod(tmp, file_mode())
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        if exc.errno is None:
            raise
        # name the file the user asked for, not the hidden temporary ("No space left on device: out/x.ply")
        raise OutputWriteError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path)) from exc
    finally:
        if tmp.exists():
            tmp.unlink()


# Bulk outputs (dataset files, meshes, tables) are not fsynced: the rename already
# makes them all-or-nothing against a killed process, and fsyncing ~30 files per
# object dominated dataset building. Checkpoints fsync (onet.utils.checkpoints).


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def savez_atomic(path: str | os.PathLike, compressed: bool = False, **arrays: np.ndarray) -> None:
    """np.savez to `path` atomically (the name is kept exactly, no '.npz' added)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            (np.savez_compressed if compressed else np.savez)(f, **arrays)

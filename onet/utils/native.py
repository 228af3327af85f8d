"""Small C kernels compiled on first use, with the torch-op code as the fallback.

onet installs with pip alone and ships no binaries of its own; where the
machine has a C compiler (Linux, torch built with OpenMP), a kernel source
that ships in the package is compiled once for this CPU (`-O3
-march=native`) into a cache and loaded with ctypes. The library links
`libgomp.so.1`, which resolves to the OpenMP runtime torch has already
loaded, so its parallel loops run on torch's threads and follow
`torch.set_num_threads`. Anything missing or failing (no compiler, another
platform or OpenMP runtime, a compile error) returns None with the reason,
logged once, and the caller keeps its torch-op path. `ONET_NATIVE=0` turns
the kernels off (to compare, or to rule them out).

Cache: `$ONET_CACHE_DIR/native`, else `$XDG_CACHE_HOME/onet/native`, else
`~/.cache/onet/native`; one file per source, compiler and CPU feature set
(a home directory shared by machines with other CPUs gets one library per
CPU), written to a temporary name and renamed, so concurrent processes
(DDP ranks, workers) never load a half-written library.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

from onet.utils.precision import cpu_flags

log = logging.getLogger(__name__)

FLAGS = ("-O3", "-march=native", "-fopenmp", "-shared", "-fPIC", "-std=c99")
COMPILE_TIMEOUT_S = 120

_lock = threading.Lock()
_loaded: dict[Path, tuple[ctypes.CDLL | None, str]] = {}


def enabled() -> bool:
    return os.environ.get("ONET_NATIVE", "1").strip().lower() not in ("0", "off", "false", "no")


def cache_dir() -> Path:
    if os.environ.get("ONET_CACHE_DIR"):
        return Path(os.environ["ONET_CACHE_DIR"]) / "native"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "onet" / "native"


def compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _unsupported() -> str | None:
    """Why this process cannot use a kernel linked against libgomp, or None."""
    if not sys.platform.startswith("linux"):
        return f"native kernels are built on Linux only (this is {sys.platform})"
    if "ATen parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return "torch is not built with OpenMP threads"
    return None


def _second_openmp_runtime() -> str:
    """Why the loaded library must not be used when it brought its own OpenMP runtime ("" if fine).

    A torch built against Intel's or LLVM's OpenMP leaves libgomp unloaded: the kernels would
    then start a second pool of threads beside torch's, each as large as the machine."""
    try:
        with open("/proc/self/maps") as f:
            maps = f.read()
    except OSError:
        return ""
    others = [name for name in ("libiomp5", "libomp.so") if name in maps]
    if "libgomp" in maps and others:
        return f"torch's OpenMP runtime is {others[0]}, not libgomp: the kernels would run a second thread pool"
    return ""


def _build(source: Path, cc: str) -> Path:
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout.split("\n")[0]
    key = hashlib.sha256("\n".join([source.read_text(), cc, version, " ".join(FLAGS),
                                    " ".join(sorted(cpu_flags()))]).encode()).hexdigest()[:16]
    target = cache_dir() / f"{source.stem}-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        run = subprocess.run([cc, *FLAGS, str(source), "-o", tmp], capture_output=True, text=True,
                             timeout=COMPILE_TIMEOUT_S)
        if run.returncode != 0:
            raise RuntimeError(f"{Path(cc).name} failed on {source.name}: {run.stderr.strip()[-500:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def load(source: Path) -> tuple[ctypes.CDLL | None, str]:
    """(library, "") for the C file `source`, or (None, why not). Built and loaded once per process."""
    source = Path(source)
    with _lock:
        if source in _loaded:
            return _loaded[source]
        lib, why = None, ""
        cc = compiler()
        if not enabled():
            why = "turned off (ONET_NATIVE=0)"
        elif unsupported := _unsupported():
            why = unsupported
        elif cc is None:
            why = "no C compiler found (cc, gcc or clang; or set CC)"
        else:
            try:
                lib = ctypes.CDLL(str(_build(source, cc)))
            except (OSError, RuntimeError, subprocess.SubprocessError) as err:
                why = f"{type(err).__name__}: {err}"
            else:
                why = _second_openmp_runtime()
                if why:
                    lib = None
        if lib is None:
            log.info("native %s not used: %s; its torch-op fallback runs instead", source.stem, why)
        _loaded[source] = (lib, why)
        return lib, why

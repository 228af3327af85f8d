"""Per-device defaults: TF32 switch and DataLoader settings (testable without a GPU)."""

import pytest
import torch

from onet.utils.device import (
    loader_settings,
    marching_cubes_workers,
    resolve_marching_cubes,
    set_tf32,
)
from onet.utils.errors import ConfigError


def test_loader_defaults_by_device():
    assert loader_settings(torch.device("cpu"), None, None) == (0, False)
    workers, pin = loader_settings(torch.device("cuda"), None, None)
    assert 1 <= workers <= 8 and pin is True
    # explicit values win; pinning never applies to CPU runs
    assert loader_settings(torch.device("cpu"), 3, True) == (3, False)
    assert loader_settings(torch.device("cuda"), 0, False) == (0, False)
    # more processes on the node -> fewer workers each
    assert loader_settings(torch.device("cuda"), None, None, processes_per_node=64)[0] == 1
    with pytest.raises(ConfigError, match="train.num_workers"):
        loader_settings(torch.device("cpu"), -1, None)


def test_marching_cubes_workers_by_device():
    assert marching_cubes_workers(torch.device("cpu"), None) == 0
    assert 1 <= marching_cubes_workers(torch.device("cuda"), None) <= 32
    assert marching_cubes_workers(torch.device("cpu"), 3) == 3
    assert marching_cubes_workers(torch.device("cuda"), None, processes_per_node=64) == 1
    with pytest.raises(ConfigError, match="marching_cubes_workers"):
        marching_cubes_workers(torch.device("cpu"), -2)


def test_marching_cubes_auto_by_device():
    assert resolve_marching_cubes("auto", torch.device("cuda")) == "torch"
    assert resolve_marching_cubes("auto", torch.device("cpu")) == "skimage"
    for value in ("skimage", "torch", "warp"):  # a set backend stays, on any device
        assert resolve_marching_cubes(value, torch.device("cpu")) == value


def test_set_tf32_switches_cuda_matmuls_only():
    matmul = torch.backends.cuda.matmul
    before = (matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision)
    try:
        set_tf32(torch.device("cpu"), True)  # a CPU run leaves the CUDA switches alone
        assert (matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision) == before
        set_tf32(torch.device("cuda"), True)  # only flags: works without a GPU
        assert matmul.fp32_precision == "tf32" and torch.backends.cudnn.conv.fp32_precision == "tf32"
        set_tf32(torch.device("cuda"), False)
        assert matmul.fp32_precision == "ieee" and torch.backends.cudnn.conv.fp32_precision == "ieee"
    finally:
        matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = before


def test_keep_freed_memory_serves_large_blocks_from_the_heap():
    import subprocess
    import sys

    # Fresh processes, so the setting does not leak into other tests. glibc counts its mmap()ed
    # blocks (mallinfo2().hblks): by default a 24 MB and a 96 MB tensor (above glibc's largest
    # mmap threshold, 32 MB: a thesis decoder's activations at B=64) each get their own mapping,
    # which free() unmaps (and the next step faults in again); with the setting, the heap.
    code = (
        "import ctypes, ctypes.util, sys, torch\n"
        "from onet.utils.device import keep_freed_memory\n"
        "took = keep_freed_memory() if sys.argv[1] == 'on' else None\n"
        "class Info(ctypes.Structure):\n"
        "    _fields_ = [(n, ctypes.c_size_t) for n in ('arena', 'ordblks', 'smblks', 'hblks', 'hblkhd',\n"
        "                                                'usmblks', 'fsmblks', 'uordblks', 'fordblks', 'keepcost')]\n"
        "libc = ctypes.CDLL(ctypes.util.find_library('c'))\n"
        "if not hasattr(libc, 'mallinfo2'):\n"
        "    print('False', 0); sys.exit()\n"
        "libc.mallinfo2.restype = Info\n"
        "before = libc.mallinfo2().hblks\n"
        "x, y = torch.empty(6 << 20), torch.empty(24 << 20)\n"
        "print(took, libc.mallinfo2().hblks - before)\n")
    mapped = {}
    for mode in ("on", "off"):
        out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, check=True)
        took, n = out.stdout.split()
        if took == "False":
            pytest.skip("not glibc >= 2.33: no mallopt / mallinfo2")
        mapped[mode] = int(n)
    assert mapped == {"on": 0, "off": 2}


def test_last_level_cache_bytes_reads_sysfs(tmp_path):
    from onet.utils.device import last_level_cache_bytes

    for i, (level, kind, size) in enumerate([(1, "Data", "48K"), (1, "Instruction", "64K"), (2, "Unified", "2048K"),
                                             (3, "Unified", "32M")]):
        d = tmp_path / f"index{i}"
        d.mkdir()
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    assert last_level_cache_bytes(str(tmp_path)) == 32 * 2**20
    (tmp_path / "index3" / "size").write_text("garbage\n")  # unreadable entries are skipped
    assert last_level_cache_bytes(str(tmp_path)) == 2048 * 2**10
    assert last_level_cache_bytes(str(tmp_path / "missing")) is None


def test_compiled_chunks_fit_half_the_last_level_cache(monkeypatch):
    from onet.models import fused

    monkeypatch.setattr(fused, "last_level_cache_bytes", lambda: 8 * 2**20)
    rows = fused.default_chunk_rows(256, compiled=True)
    assert rows * 256 * 4 * 4 <= 4 * 2**20  # four float32 scratch buffers of (rows, 256)
    monkeypatch.setattr(fused, "last_level_cache_bytes", lambda: None)
    assert fused.default_chunk_rows(256, compiled=True) > rows


def test_release_freed_memory_returns_what_keep_freed_memory_kept():
    import subprocess
    import sys

    # a fresh process: keep_freed_memory is process-wide. 400 MB in 64 MB tensors, freed: the
    # heap keeps them resident until release_freed_memory hands them back
    code = (
        "import torch\n"
        "from onet.utils.device import keep_freed_memory, release_freed_memory\n"
        "def rss(): return int(open('/proc/self/statm').read().split()[1]) * 4096 // 2**20\n"
        "assert keep_freed_memory()\n"
        "base = rss()\n"
        "xs = [torch.ones(16 * 2**20) for _ in range(6)]\n"
        "peak = rss()\n"
        "del xs\n"
        "kept = rss()\n"
        "assert release_freed_memory()\n"
        "print(base, peak, kept, rss())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    base, peak, kept, released = map(int, out.split())
    assert peak - base > 350
    assert kept - base > 350  # kept for reuse
    assert released - base < 100  # given back

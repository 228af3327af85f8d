"""Compiled C kernels (onet/utils/native.py): built once per CPU into the cache, loaded with ctypes,
and every way of not having them gives None with the reason instead of an error."""

import ctypes

import pytest

from onet.utils import native

needs_cc = pytest.mark.skipif(native.compiler() is None or native._unsupported() is not None,
                              reason="no C compiler or not Linux with OpenMP torch")

SOURCE = """
#include <omp.h>
int onet_test_threads(void) { int n = 0;
#pragma omp parallel reduction(+:n)
  n += 1;
  return n; }
double onet_test_axpy(double a, double x, double y) { return a * x + y; }
"""


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ONET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(native, "_loaded", {})
    return tmp_path / "cache" / "native"


@needs_cc
def test_builds_once_into_the_cache_and_runs_on_torch_threads(tmp_path, cache):
    import torch

    src = tmp_path / "k.c"
    src.write_text(SOURCE)
    lib, why = native.load(src)
    assert why == "" and lib is not None
    lib.onet_test_axpy.restype = ctypes.c_double
    lib.onet_test_axpy.argtypes = [ctypes.c_double] * 3
    assert lib.onet_test_axpy(2.0, 3.0, 1.0) == 7.0
    # linked against the OpenMP runtime torch loaded: torch.set_num_threads applies to its loops
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert lib.onet_test_threads() == 1
    finally:
        torch.set_num_threads(before)
    built = list(cache.glob("k-*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    assert native._build(src, native.compiler()) == built[0]  # cached: not compiled again
    assert built[0].stat().st_mtime_ns == stamp
    assert not [p for p in cache.iterdir() if p not in built]  # no temporary files left
    src.write_text(SOURCE + "\nint onet_test_other(void) { return 2; }\n")
    assert native._build(src, native.compiler()) != built[0]  # another source, another library


@needs_cc
def test_compile_error_gives_none_with_the_compiler_message(tmp_path, cache):
    src = tmp_path / "broken.c"
    src.write_text("int f(void) { return }\n")
    lib, why = native.load(src)
    assert lib is None
    assert "broken.c" in why and "error" in why
    assert not list(cache.glob("*.so"))  # nothing half-written stays in the cache
    assert native.load(src) == (None, why)  # tried once per process


def test_turned_off_or_no_compiler_gives_none_with_the_reason(tmp_path, cache, monkeypatch):
    src = tmp_path / "k.c"
    src.write_text(SOURCE)
    monkeypatch.setenv("ONET_NATIVE", "0")
    assert native.load(src) == (None, "turned off (ONET_NATIVE=0)")
    monkeypatch.setenv("ONET_NATIVE", "1")
    monkeypatch.setattr(native, "_loaded", {})
    monkeypatch.setenv("CC", "no-such-compiler")
    monkeypatch.setenv("PATH", str(tmp_path))  # no cc, gcc or clang on it
    lib, why = native.load(src)
    assert lib is None
    assert "no C compiler" in why or "Linux" in why or "OpenMP" in why
    assert not cache.exists() or not list(cache.iterdir())

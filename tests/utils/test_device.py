"""Per-device defaults: TF32 switch and DataLoader settings (testable without a GPU)."""

import pytest
import torch

from onet.utils.device import loader_settings, marching_cubes_workers, set_tf32
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
    assert 1 <= marching_cubes_workers(torch.device("cuda"), None) <= 8
    assert marching_cubes_workers(torch.device("cpu"), 3) == 3
    assert marching_cubes_workers(torch.device("cuda"), None, processes_per_node=64) == 1
    with pytest.raises(ConfigError, match="marching_cubes_workers"):
        marching_cubes_workers(torch.device("cpu"), -2)


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


def test_keep_freed_memory_stops_page_faults_on_reallocation():
    import subprocess
    import sys

    # Fresh processes, so the setting does not leak into other tests: a few steps of 48 stacked
    # GANs (the loop the setting is for), counting minor page faults after a warm-up round.
    code = (
        "import resource, sys\n"
        "from onet.utils.device import keep_freed_memory\n"
        "took = keep_freed_memory() if sys.argv[1] == 'on' else None\n"
        "from onet.gan import bench2d as B\n"
        "runs = [r for r in B.grid_runs(B.FULL, ('r1',), ('line', 'eight')) if r.width == 32 and r.act == 'tanh']\n"
        "grid = B.Grid(iters=3, checkpoints=1, select_samples=16)\n"
        "B.train_group(runs, grid, 1, seed=0, device='cpu', progress=False)\n"
        "f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "B.train_group(runs, grid, 1, seed=0, device='cpu', progress=False)\n"
        "print(took, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)\n")
    faults = {}
    for mode in ("on", "off"):
        out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, check=True)
        took, n = out.stdout.split()
        faults[mode] = int(n)
        if took == "False":
            pytest.skip("not glibc: no mallopt")
    assert faults["on"] * 3 < faults["off"], faults   # measured 422 against 2,488

"""scripts/gpu_check.sh and its Python half: options, and the helpers that compute the table's figures.

The check itself needs minutes (a GPU run, or `--dry-run` on a CPU) and runs only by hand.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from script_loader import load_script

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load():
    return load_script("gpu_check")


def test_shell_script_parses_and_answers_its_options():
    assert subprocess.run(["bash", "-n", str(SCRIPTS / "gpu_check.sh")]).returncode == 0
    out = subprocess.run(["bash", str(SCRIPTS / "gpu_check.sh"), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--dry-run" in out.stdout
    bad = subprocess.run(["bash", str(SCRIPTS / "gpu_check.sh"), "--fast"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown option '--fast'" in bad.stderr
    if shutil.which("shellcheck"):
        lint = subprocess.run(["shellcheck", str(SCRIPTS / "gpu_check.sh")], capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout


def _fake_cuda_machine(tmp_path: Path, python: str) -> dict:
    """PATH and PYTHON for gpu_check.sh as on a CUDA machine: an `nvidia-smi` that names a GPU and
    an interpreter (`python`, really run) whose torch answers the script's CUDA test with yes. The
    interpreter stops at gpu_check.py, whose checks are not what these tests are about."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text('#!/bin/bash\necho "a GPU, 1.0, 80 GiB"\n')
    (bin_dir / "python").write_text(
        "#!/bin/bash\n"
        'if [ "$1" = "-c" ] && [[ "$2" == *cuda.is_available* ]]; then exit 0; fi\n'
        'if [ "$1" = "scripts/gpu_check.py" ]; then echo "gpu_check.py would run"; exit 0; fi\n'
        f'exec "{python}" "$@"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHON": str(bin_dir / "python"),
            "PIP_NO_INDEX": "1"}  # no download whatever happens: as on the offline machines lent here


def test_installed_environment_runs_the_checks_without_pip(tmp_path):
    """A rerun, or a machine set up before: every package is there, so nothing is installed (pip on
    an offline machine only retries and fails) and the checks start."""
    out = subprocess.run(["bash", str(SCRIPTS / "gpu_check.sh")], capture_output=True, text=True, timeout=120,
                         env=_fake_cuda_machine(tmp_path, sys.executable))
    assert out.returncode == 0, out.stderr
    assert "nothing to install" in out.stdout and "gpu_check.py would run" in out.stdout
    assert "pip install" not in out.stdout


def test_failed_install_names_the_missing_packages(tmp_path):
    """Offline, with packages missing and no ONET_WHEELS: pip fails, and the script says which
    packages are missing and where to get them, exit 1, before any check."""
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "bare")], check=True, timeout=120)
    out = subprocess.run(["bash", str(SCRIPTS / "gpu_check.sh")], capture_output=True, text=True, timeout=300,
                         env=_fake_cuda_machine(tmp_path, str(tmp_path / "bare" / "bin" / "python")))
    assert out.returncode == 1
    assert "pip install -e .[gpu] failed" in out.stderr
    assert "missing packages: torch, numpy" in out.stderr and "ONET_WHEELS" in out.stderr
    assert "gpu_check.py would run" not in out.stdout


def test_python_half_answers_help():
    out = subprocess.run([sys.executable, str(SCRIPTS / "gpu_check.py"), "--help"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and "--dry-run" in out.stdout


def test_steady_iteration_rate_skips_start_up(tmp_path):
    check = _load()
    path = tmp_path / "metrics.csv"
    rows = ["it,epoch,time,loss,val_loss,val_iou,skipped", "1,0,30.0,1.0,,,0", "2,0,30.5,1.0,,,0",
            "2,0,31.0,,1.0,0.5,0", "3,0,31.0,1.0,,,0", "4,0,31.5,1.0,,,0"]
    path.write_text("\n".join(rows) + "\n")
    # iterations 2 -> 4 took 1 s; the 30 s before iteration 1 (start-up) and the validation row do not count
    assert check.steady_it_per_s(path, skip=2) == pytest.approx(2.0)


def test_steady_mesh_rate_skips_the_first_batch(tmp_path):
    check = _load()
    folder = tmp_path / "meshes" / "sub"
    folder.mkdir(parents=True)
    # batches of 2: the first written at 100 s (after the start-up), then one batch every 0.5 s
    for i, t in enumerate([99.9, 100.0, 100.4, 100.5, 100.9, 101.0]):
        f = folder / f"{i}.ply"
        f.write_text("ply")
        os.utime(f, (t, t))
    assert check.steady_meshes_per_s(tmp_path / "meshes", 2) == pytest.approx(4.0)  # 4 meshes in 1 s
    assert check.steady_meshes_per_s(tmp_path / "meshes", 6) is None  # one batch: no rate after it


def test_table_marks_failures(capsys):
    check = _load()
    table = check.Table()
    table.add("a", True, "1 it/s", "")
    table.add("b", None, "not run")
    assert not table.failed
    table.add("c", False, "ValueError: x")
    table.print()
    out = capsys.readouterr().out
    assert table.failed and "| c " in out and "FAIL" in out


def test_step_flops_counts_forward_and_backward():
    from onet.config import CONFIG_DIR, load_config

    check = _load()
    cfg = load_config(CONFIG_DIR / "demo.yaml")
    seconds, flops = check.train_step(torch.device("cpu"), "fp32", name="demo", batch_size=2, iters=1, repeats=1)
    # at least the decoder's linears: forward + backward = 3 x (2 * points * in * out) per layer
    points = 2 * cfg["data"]["points_subsample"]
    assert flops > 3 * 2 * points * 32 * 32 and seconds > 0

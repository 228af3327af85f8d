"""external/ scripts run against a dataset fixture."""

import shutil
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "external" / "check_dataset.py"


def test_check_dataset_reports_missing_and_damaged_files(tiny_dataset, tmp_path):
    ok = subprocess.run([sys.executable, SCRIPT, tiny_dataset, "--deep"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "dataset OK" in ok.stdout
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    first = (data / "mug" / "train.lst").read_text().split()[0]
    (data / "mug" / first / "pointcloud.npz").unlink()
    (data / "mug" / first / "model.binvox").write_bytes(b"#binvox 1\ngarbage")
    bad = subprocess.run([sys.executable, SCRIPT, data, "--deep"], capture_output=True, text=True)
    assert bad.returncode == 1
    assert f"{first}/pointcloud.npz: missing" in bad.stdout
    assert f"{first}/model.binvox: unreadable" in bad.stdout

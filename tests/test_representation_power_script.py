"""scripts/representation_power.py: the voxel IoU, and a small end-to-end run that resumes.

The full experiment (128^3 voxels, 512-d codes, 100k fit steps) runs only by hand.
"""

import json

import numpy as np
import pytest
from script_loader import load_script


@pytest.fixture
def rp(monkeypatch):
    module = load_script("representation_power")
    monkeypatch.setattr(module, "RESOLUTIONS", (8, 16))  # 128^3 inside tests takes minutes
    return module


def test_voxel_iou_is_the_inside_test_of_the_cells(rp):
    grid = np.zeros((4, 4, 4), bool)
    grid[:2] = True  # the half x < 0 of the unit cube
    points = np.array([[-0.4, 0, 0], [-0.1, 0.3, -0.3], [0.1, 0, 0], [0.4, 0.2, 0.1], [0.7, 0, 0]], np.float32)
    occ = np.array([True, False, True, False, True])
    # predicted inside: points 0, 1; reference inside: 0, 2, 4 -> intersection 1, union 4
    assert rp.voxel_iou(grid, points, occ) == pytest.approx(0.25)


def test_small_run_writes_table_plot_and_resumes(rp, tiny_dataset, tmp_path, capsys):
    args = ["--data", str(tiny_dataset), "--category", "table", "--split", "train", "--max-shapes", "2",
            "--code-dim", "16", "--hidden", "16", "--blocks", "1", "--points", "256", "--batch-shapes", "2",
            "--lr", "3e-3", "--device", "cpu", "--out", str(tmp_path)]
    assert rp.main([*args, "--iters", "60"]) == 0
    result = json.loads((tmp_path / "representation_power.json").read_text())
    assert result["n_shapes"] == 2 and list(result["voxels"]["mean_iou"]) == ["8", "16"]
    assert result["voxels"]["bytes_per_shape"] == {"8": 64, "16": 512}
    assert all(0 <= v <= 1 for part in ("voxels", "onet") for v in result[part]["mean_iou"].values())
    (_, first), (_, last) = result["onet"]["loss_first_last"]
    assert last < first  # the fit learns
    net = result["onet"]
    assert net["bytes_per_shape"] == 4 * (net["network_parameters"] + 2 * 16) / 2
    assert (tmp_path / "representation_power.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "representation_power.md").read_text().startswith("| representation | 8^3 | 16^3 |")
    capsys.readouterr()
    assert rp.main([*args, "--iters", "80"]) == 0
    assert "resuming the fit" in capsys.readouterr().out
    assert json.loads((tmp_path / "representation_power.json").read_text())["onet"]["iterations"] == 80

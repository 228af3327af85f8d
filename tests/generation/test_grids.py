"""generation.save_grid: the saved probability grid follows onet.geometry.grid and reproduces the mesh."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import expit, logit

from onet.config import CONFIG_DIR, load_config
from onet.generation import generate
from onet.generation.grids import save_grid
from onet.generation.inputs import load_user_input
from onet.geometry.grid import grid_points
from onet.geometry.marching_cubes import marching_cubes
from onet.geometry.mesh_files import read_mesh
from onet.models import build_model
from onet.utils.checkpoints import save_checkpoint

TAU = 0.3


def test_save_grid_writes_probabilities_and_the_convention(tmp_path):
    logits = np.random.default_rng(0).normal(size=(9, 9, 9)).astype(np.float32) * 50
    save_grid(tmp_path / "g.npz", logits, threshold=0.2, box_size=1.1, loc=(1, 2, 3), scale=2.5)
    with np.load(tmp_path / "g.npz") as z:
        assert z["probabilities"].dtype == np.float32 and z["probabilities"].shape == (9, 9, 9)
        assert np.allclose(z["probabilities"], expit(logits.astype(np.float64)), atol=1e-7)
        assert int(z["resolution"]) == 8 and float(z["box_size"]) == 1.1 and float(z["threshold"]) == 0.2
        assert z["loc"].tolist() == [1, 2, 3] and float(z["scale"]) == 2.5
    with pytest.raises(ValueError, match="cubic"):
        save_grid(tmp_path / "h.npz", logits[:, :, :4], threshold=0.2, box_size=1.1)


@pytest.fixture
def pointcloud_run(tmp_path):
    """A small random point-cloud model whose level set crosses the box, and one scan far from the origin."""
    cfg = load_config(CONFIG_DIR / "pointcloud.yaml", [
        f"out_dir={tmp_path / 'run'}", "model.encoder_kwargs={hidden_dim: 16}",
        "model.decoder_kwargs={hidden_size: 32, n_blocks: 2}", "model.c_dim=16", "data.pointcloud_n=64",
        f"test.threshold={TAU}", "generation.save_grid=true", "generation.previews=false",
        "generation.copy_input=false"])
    torch.manual_seed(0)
    model = build_model(cfg["model"]).eval()
    scans = tmp_path / "scans"
    scans.mkdir()
    cloud = np.random.default_rng(1).normal(size=(200, 3)) * [1.0, 2.0, 0.5] + [5.0, -3.0, 1.0]
    np.save(scans / "scan.npy", cloud.astype(np.float32))
    item = load_user_input(scans / "scan.npy", scans, "pointcloud", pointcloud_n=64, seed=cfg["seed"])
    with torch.no_grad():
        # shift the output so the level set tau runs through the middle of the box
        f = model(grid_points(8).unsqueeze(0), item.inputs.unsqueeze(0), sample=False)
        model.decoder.fc_out.bias -= f.median() - float(logit(TAU))
    save_checkpoint(tmp_path / "model.pt", model=model.state_dict(), model_config=cfg["model"])
    return cfg, model, item, scans, tmp_path / "model.pt"


def test_dense_grid_holds_the_network_probabilities_at_the_documented_points(pointcloud_run):
    cfg, model, item, scans, ckpt = pointcloud_run
    cfg["generation"].update(resolution_0=12, upsampling_steps=0)
    summary = generate(cfg, device="cpu", input_dir=scans, checkpoint=ckpt, progress=False, log=lambda *a: None)
    with np.load(summary.out_dir / "meshes" / "scan.grid.npz") as z:
        probs, R, box = z["probabilities"], int(z["resolution"]), float(z["box_size"])
    assert probs.shape == (13, 13, 13) and R == 12
    # world = box * (index / R - 0.5), [i, j, k] -> (x, y, z)
    with torch.no_grad():
        expected = torch.sigmoid(model(grid_points(R, box_size=box).unsqueeze(0), item.inputs.unsqueeze(0),
                                       sample=False)).view(13, 13, 13).numpy()
    assert np.abs(probs - expected).max() < 1e-5
    assert probs.min() < TAU < probs.max()


def test_own_marching_cubes_on_the_saved_grid_reproduces_the_mesh(pointcloud_run):
    cfg, _, item, scans, ckpt = pointcloud_run
    cfg["generation"].update(resolution_0=8, upsampling_steps=2)  # MISE: partly interpolated values
    summary = generate(cfg, device="cpu", input_dir=scans, checkpoint=ckpt, mesh_format="stl", progress=False,
                       log=lambda *a: None)
    meshes = summary.out_dir / "meshes"
    assert sorted(p.name for p in meshes.iterdir()) == ["scan.grid.npz", "scan.stl"]
    with np.load(meshes / "scan.grid.npz") as z:
        probs, tau, box = z["probabilities"].astype(np.float64), float(z["threshold"]), float(z["box_size"])
        loc, scale = z["loc"], float(z["scale"])
    assert tau == TAU and np.allclose(loc, item.loc) and scale == pytest.approx(item.scale)
    v, f = marching_cubes(logit(probs), float(logit(tau)), box_size=box)
    v = v * scale + loc
    v_file, f_file = read_mesh(meshes / "scan.stl")
    assert len(f) == len(f_file) > 0
    assert np.allclose(np.sort(v[f].reshape(-1, 3), axis=0), np.sort(v_file[f_file].reshape(-1, 3), axis=0),
                       atol=1e-4 * scale)

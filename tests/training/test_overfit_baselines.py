"""3D-R2N2 and PSGN overfit a handful of synthetic objects on CPU: the loss falls, IoU / Chamfer improve."""

import csv
import shutil

import pytest
import torch

from onet.config import CONFIG_DIR, load_config
from onet.training import train


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def handful(tiny_dataset, tmp_path):
    """The tiny dataset's 8 objects, every one in train, val and test (so validation measures the fit)."""
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    for category in ("table", "mug"):
        ids = sorted(p.name for p in (root / category).iterdir() if p.is_dir())
        for split in ("train", "val", "test"):
            (root / category / f"{split}.lst").write_text("\n".join(ids) + "\n")
    return root


def fit(config, root, out, extra):
    cfg = load_config(CONFIG_DIR / "baselines" / config, [
        f"out_dir={out}", f"data.path={root}", "device=cpu", "data.img_size=32", "data.points_iou_subsample=2000",
        "model.encoder_kwargs={width: 8, pretrained: false}", "model.c_dim=32", "train.batch_size=8",
        "train.lr=0.001", "train.lr_schedule=constant", "train.max_iters=120", "train.max_time=null",
        "train.validate_every=40", "train.checkpoint_every=1000", "train.print_every=10", *extra])
    result = train(cfg, progress=False, log=lambda *a: None)
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    losses = [float(r["loss"]) for r in rows if r["loss"]]
    vals = [r for r in rows if r["val_loss"]]
    return result, losses, vals


def test_r2n2_overfits_a_handful_of_objects(handful, tmp_path, one_thread):
    result, losses, vals = fit("r2n2_demo.yaml", handful, tmp_path / "r2n2", ["model.decoder_kwargs={hidden_size: 32}"])
    assert losses[-1] < 0.5 * losses[0], losses
    ious = [float(r["val_iou"]) for r in vals]
    assert ious[-1] > ious[0] + 0.2 and result.best_metric == max(ious), ious


def test_psgn_overfits_a_handful_of_objects(handful, tmp_path, one_thread):
    result, losses, vals = fit("psgn_demo.yaml", handful, tmp_path / "psgn", [
        "model.decoder_kwargs={hidden_size: 64, n_points: 256}", "data.pointcloud_target_n=256"])
    assert losses[-1] < 0.5 * losses[0], losses
    chamfers = [float(r["val_chamfer"]) for r in vals]
    # 120 iterations take validation Chamfer to 0.67-0.73x its first value (seeds 0-2, fused and
    # unfused Adam, 2026-12-05); an untrained or broken model stays near 1x
    assert chamfers[-1] < 0.8 * chamfers[0] and result.best_metric == min(chamfers), chamfers

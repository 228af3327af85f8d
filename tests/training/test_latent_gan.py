"""`onet train` on a latent-GAN config: codes from the VAE, the recipe's logs, exact resume, bad VAE runs."""

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from onet.cli import main
from onet.models.latent import load_latent_sampler
from onet.training import train
from onet.utils.checkpoints import load_checkpoint


def test_latent_gan_trains_logs_gradients_and_caches_codes(tiny_latent_gan_cfg):
    cfg = tiny_latent_gan_cfg
    result = train(cfg, progress=False, log=lambda *a: None)
    out = result.out_dir
    assert result.iterations == 12 and "max_iters" in result.stop_reason
    assert math.isfinite(result.last_val["w1"])
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["it"]) for r in rows] == [2, 4, 6, 8, 10, 12]
    for r in rows:  # the discriminator's gradients are recorded at every print
        for key in ("loss_d", "loss_g", "grad_real", "grad_fake", "grad_d"):
            assert math.isfinite(float(r[key])) and (key in ("loss_d", "loss_g") or float(r[key]) >= 0)
    assert [r["w1"] != "" for r in rows] == [False, False, True, False, False, True]
    # the training codes: the VAE's posterior means of the train split, cached with the VAE's digest
    with np.load(out / "codes.npz") as f:
        names = [str(n) for n in f["names"]]
        codes = f["codes"]
    train_ids = (Path(cfg["data"]["path"]) / "table" / "train.lst").read_text().split()
    assert names == [f"table/{m}" for m in train_ids]
    assert codes.shape == (len(names), 8)
    ckpt = load_checkpoint(out / "model.pt")
    assert ckpt["it"] == 12 and ckpt["latent_gan"]["z_dim"] == 8
    assert torch.allclose(ckpt["code_mean"], torch.from_numpy(codes).mean(0), atol=1e-6)
    sampler, meta = load_latent_sampler(out / "model.pt")
    z = sampler.sample(5, generator=torch.Generator().manual_seed(0))
    assert z.shape == (5, 8) and torch.isfinite(z).all()
    assert yaml.safe_load((out / "config.yaml").read_text())["latent_gan"]["vae_dir"] == cfg["latent_gan"]["vae_dir"]


def test_latent_gan_resumes_exactly(tiny_latent_gan_cfg, tmp_path):
    straight = {**tiny_latent_gan_cfg, "out_dir": str(tmp_path / "straight")}
    train(straight, progress=False, log=lambda *a: None)
    resumed = {**tiny_latent_gan_cfg, "out_dir": str(tmp_path / "resumed"),
               "train": {**tiny_latent_gan_cfg["train"], "max_iters": 6}}
    train(resumed, progress=False, log=lambda *a: None)
    resumed["train"]["max_iters"] = 12
    logs = []
    train(resumed, progress=False, log=logs.append)
    assert any("resuming" in line and "iteration 6" in line for line in logs)
    a, b = load_checkpoint(tmp_path / "straight" / "model.pt"), load_checkpoint(tmp_path / "resumed" / "model.pt")
    for key in ("generator", "discriminator", "generator_ema"):
        for name, value in a[key].items():
            assert torch.equal(value, b[key][name]), f"{key}.{name} differs after resuming"
    rows_a = list(csv.DictReader(open(tmp_path / "straight" / "metrics.csv")))
    rows_b = list(csv.DictReader(open(tmp_path / "resumed" / "metrics.csv")))
    assert [r["loss_d"] for r in rows_a] == [r["loss_d"] for r in rows_b]


def test_the_ablation_without_r1_trains(tiny_latent_gan_cfg):
    cfg = {**tiny_latent_gan_cfg, "latent_gan": {**tiny_latent_gan_cfg["latent_gan"], "reg": "none",
                                                 "optimizer": "adam"}}
    result = train(cfg, progress=False, log=lambda *a: None)
    assert result.iterations == 12


def _write(cfg, path):
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_a_vae_dir_without_a_vae_exits_2_naming_it(tiny_latent_gan_cfg, tiny_cfg, tmp_path, capsys):
    empty = tmp_path / "no_run"
    empty.mkdir()
    cfg = {**tiny_latent_gan_cfg, "latent_gan": {**tiny_latent_gan_cfg["latent_gan"], "vae_dir": str(empty)}}
    assert main(["train", _write(cfg, tmp_path / "a.yaml"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "latent_gan.vae_dir" in err and str(empty) in err and "Traceback" not in err

    # a conditional (image) model's run is not a VAE either
    tiny_cfg["train"].update(max_iters=1, validate_every=1000, checkpoint_every=1000)
    train(tiny_cfg, progress=False, log=lambda *a: None)
    cfg["latent_gan"] = {**cfg["latent_gan"], "vae_dir": tiny_cfg["out_dir"], "vae_checkpoint": "model.pt"}
    assert main(["train", _write(cfg, tmp_path / "b.yaml"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "latent_gan.vae_dir" in err and "not a VAE" in err


def test_a_changed_vae_stops_the_resume(tiny_latent_gan_cfg, tiny_vae_cfg, tmp_path):
    import shutil

    vae_dir = tmp_path / "vae_copy"
    shutil.copytree(tiny_vae_cfg["out_dir"], vae_dir)
    cfg = {**tiny_latent_gan_cfg, "latent_gan": {**tiny_latent_gan_cfg["latent_gan"], "vae_dir": str(vae_dir)},
           "train": {**tiny_latent_gan_cfg["train"], "max_iters": 2}}
    train(cfg, progress=False, log=lambda *a: None)
    state = torch.load(vae_dir / "model_best.pt", weights_only=False)
    state["it"] = state.get("it", 0) + 1  # another checkpoint of the VAE
    torch.save(state, vae_dir / "model_best.pt")
    cfg["train"]["max_iters"] = 4
    with pytest.raises(RuntimeError, match="another VAE checkpoint"):
        train(cfg, progress=False, log=lambda *a: None)


@pytest.mark.parametrize("override, key", [("latent_gan.ema_decay=1.0", "latent_gan.ema_decay"),
                                           ("latent_gan.gamma=-1", "latent_gan.gamma"),
                                           ("latent_gan.gamma=0", "latent_gan.gamma"),
                                           ("latent_gan.hidden_size=0", "latent_gan.hidden_size"),
                                           ("train.lr=0", "train.lr")])
def test_out_of_range_keys_exit_2_naming_the_key(tiny_latent_gan_cfg, tmp_path, capsys, override, key):
    path = _write(tiny_latent_gan_cfg, tmp_path / "cfg.yaml")
    assert main(["train", path, override, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert key in err and "Traceback" not in err
    assert not (Path(tiny_latent_gan_cfg["out_dir"]) / "model.pt").exists()


def test_latent_gan_time_limit_waits_for_min_iters(tiny_latent_gan_cfg):
    cfg = tiny_latent_gan_cfg
    cfg["train"].update(max_time=1e-6, min_iters=4)  # long past at the first check: the floor decides
    result = train(cfg, progress=False, log=lambda *a: None)
    assert result.iterations == 4 and result.stop_reason == "reached train.max_time=1e-06s"

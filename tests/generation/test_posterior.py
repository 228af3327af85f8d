"""VAE posterior tools: encoding dataset shapes, `onet generate --encode / --interpolate --between`, the
latent GAN's samples, codes.npz, and an overfit VAE whose posterior means decode to its training shapes."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from onet.cli import main
from onet.config import CONFIG_DIR, load_config
from onet.data.formats import load_points_npz
from onet.data.synthetic import build_synthetic_dataset
from onet.generation import encode_shapes, read_codes
from onet.generation.posterior import find_shapes, interpolate, write_codes
from onet.models.latent import load_vae
from onet.training import train
from onet.utils.errors import UsageError


def _ids(cfg, split):
    return (Path(cfg["data"]["path"]) / "table" / f"{split}.lst").read_text().split()


def _run(*args):
    return main([*map(str, args), "--device", "cpu", "--no-progress"])


def _cfg_file(cfg, tmp_path, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_encode_shapes_gives_the_posterior_mean_and_repeats(tiny_vae_cfg):
    vae, _ = load_vae(tiny_vae_cfg)
    root = tiny_vae_cfg["data"]["path"]
    items = [("table", m) for m in _ids(tiny_vae_cfg, "train")]
    a = encode_shapes(vae, root, items, n_points=64, seed=3, batch_size=1)
    b = encode_shapes(vae, root, items, n_points=64, seed=3, batch_size=3)  # batching changes nothing
    assert a.shape == (len(items), 8) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-5)
    # by hand: the latent encoder's mean on the same seeded subset
    data = load_points_npz(Path(root) / "table" / items[0][1] / "points.npz")
    from onet.generation.posterior import _object_rng
    sel = _object_rng(3, f"table/{items[0][1]}").integers(0, len(data["points"]), size=64)
    with torch.no_grad():
        mean, _ = vae.encoder_latent(torch.from_numpy(data["points"][sel])[None],
                                     torch.from_numpy(data["occupancies"][sel].astype(np.float32))[None])
    np.testing.assert_allclose(a[0], mean[0].numpy(), atol=1e-5)
    assert not np.allclose(a[0], encode_shapes(vae, root, items[:1], n_points=64, seed=4)[0])


def test_find_shapes_names_what_is_missing(tiny_vae_cfg):
    root = tiny_vae_cfg["data"]["path"]
    m = _ids(tiny_vae_cfg, "train")[0]
    assert find_shapes(root, [f"table/{m}"]) == [("table", m)]
    for bad in ("table/nope", "table", "a/b/c"):
        with pytest.raises(UsageError, match=f"--between {bad}: not a shape"):
            find_shapes(root, [bad])


def test_interpolate_and_codes_file(tmp_path):
    z0, z1 = torch.zeros(3), torch.ones(3)
    path = interpolate(z0, z1, 5)
    assert len(path) == 5 and torch.equal(path[0], z0) and torch.equal(path[-1], z1)
    assert torch.allclose(path[2], torch.full((3,), 0.5))
    f = tmp_path / "codes.npz"
    write_codes(f, ["a", "b"], np.arange(6).reshape(2, 3))
    write_codes(f, ["b", "c"], np.ones((2, 3)))  # b replaced, a kept
    table = read_codes(f)
    assert sorted(table) == ["a", "b", "c"] and np.array_equal(table["b"], np.ones(3))
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="bad.npz"):
        read_codes(tmp_path / "bad.npz")


def test_generate_encode_and_between(tiny_vae_cfg, tmp_path):
    cfg = {**tiny_vae_cfg, "out_dir": tiny_vae_cfg["out_dir"]}
    path = _cfg_file(cfg, tmp_path)
    out = tmp_path / "enc"
    assert _run("generate", path, "--encode", "--output", out) == 0
    test_ids = _ids(cfg, "test")
    codes = read_codes(out / "codes.npz")
    assert sorted(codes) == [f"table/{m}" for m in test_ids]  # named like a conditional model's meshes
    assert sorted(p.stem for p in (out / "meshes" / "table").iterdir()) == sorted(test_ids)

    a, b = [f"table/{m}" for m in _ids(cfg, "train")[:2]]
    out2 = tmp_path / "interp"
    assert _run("generate", path, "--interpolate", 3, "--between", a, b, "--output", out2) == 0
    codes2 = read_codes(out2 / "codes.npz")
    vae, _ = load_vae(tiny_vae_cfg)
    d = tiny_vae_cfg["data"]
    ends = encode_shapes(vae, d["path"], find_shapes(d["path"], [a, b]), n_points=d["points_subsample"],
                         seed=cfg["seed"])
    np.testing.assert_allclose(codes2["interpolation_000"], ends[0], atol=1e-5)
    np.testing.assert_allclose(codes2["interpolation_002"], ends[1], atol=1e-5)
    np.testing.assert_allclose(codes2["interpolation_001"], ends.mean(0), atol=1e-5)


def test_bad_between_and_mode_combinations_exit_2(tiny_vae_cfg, tmp_path, capsys):
    path = _cfg_file(tiny_vae_cfg, tmp_path)
    a = f"table/{_ids(tiny_vae_cfg, 'train')[0]}"
    assert _run("generate", path, "--interpolate", 3, "--between", a, "table/no_such_shape") == 2
    err = capsys.readouterr().err
    assert "table/no_such_shape" in err and "Traceback" not in err
    assert _run("generate", path, "--between", a, a) == 2  # without --interpolate
    assert _run("generate", path, "--encode", "--samples", 2) == 2
    assert "run them separately" in capsys.readouterr().err


def test_latent_gan_samples_decode_and_score(tiny_latent_gan_cfg, tmp_path):
    cfg = tiny_latent_gan_cfg
    train(cfg, progress=False, log=lambda *a: None)
    path = _cfg_file(cfg, tmp_path)
    assert _run("generate", path, "--samples", 3) == 0
    samples = Path(cfg["out_dir"]) / (cfg["generation"]["generation_dir"] + "_samples")
    codes = read_codes(samples / "codes.npz")
    assert sorted(codes) == ["sample_000", "sample_001", "sample_002"]
    # the codes are the EMA generator's samples in the VAE's latent space (same seed, same codes)
    from onet.models.latent import load_latent_sampler
    sampler, _ = load_latent_sampler(Path(cfg["out_dir"]) / "model.pt")
    expected = sampler.sample(3, generator=torch.Generator().manual_seed(cfg["seed"]))
    np.testing.assert_allclose(codes["sample_001"], expected[1].numpy(), atol=1e-5)
    assert len(list((samples / "meshes").glob("sample_*.ply"))) == 3
    # scored as a set against the test split, with the latent row from the VAE's codes of the test split
    assert _run("eval", path, "--generative") == 0
    doc = yaml.safe_load((Path(cfg["out_dir"]) / "eval" / "generative" / "generative.json").read_text())
    labels = [s["label"] for s in doc["samplers"]]
    assert labels[-1] == "train split"
    for s in doc["samplers"]:
        assert s["shapes"]["n_reference"] == len(_ids(cfg, "test"))
        assert s["latent"] is not None and s["latent"]["n_generated"] == s["shapes"]["n_generated"]


def test_posterior_mean_of_a_training_shape_decodes_to_it(tmp_path):
    """A tiny VAE overfit on two bottles: encode (posterior mean) + decode reaches IoU >= 0.8 with each."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small runs fastest on one thread
    try:
        root = build_synthetic_dataset(tmp_path / "data", n_per_class=4, classes=["bottle"], seed=0, n_views=1,
                                       img_size=16, n_points=20000, n_surface=2000, progress=False)
        ids = (root / "bottle" / "train.lst").read_text().split()[:2]
        for split in ("train", "val", "test"):
            (root / "bottle" / f"{split}.lst").write_text("\n".join(ids) + "\n")
        cfg = load_config(CONFIG_DIR / "unconditional.yaml", [
            f"out_dir={tmp_path / 'run'}", f"data.path={root}", "data.classes=[bottle]", "device=cpu",
            "data.points_subsample=2048", "model.z_dim=8", "model.decoder_kwargs={hidden_size: 64, n_blocks: 3}",
            "model.encoder_latent_kwargs={hidden_size: 32}", "train.batch_size=2", "train.lr=0.003",
            "train.max_iters=600", "train.validate_every=100000", "train.checkpoint_every=100000",
            "train.print_every=100", "test.threshold=0.5",
        ])
        train(cfg, progress=False, log=lambda *a: None)
        vae, _ = load_vae(cfg)
        codes = encode_shapes(vae, root, [("bottle", m) for m in ids], n_points=2048, seed=cfg["seed"])
        logit_tau = float(np.log(cfg["test"]["threshold"] / (1 - cfg["test"]["threshold"])))
        for m, z in zip(ids, codes):
            data = load_points_npz(root / "bottle" / m / "points.npz")
            with torch.no_grad():
                logits = vae.decode(torch.from_numpy(data["points"])[None], torch.from_numpy(z)[None], None)[0]
            pred, occ = logits.numpy() > logit_tau, data["occupancies"].astype(bool)
            iou = (pred & occ).sum() / (pred | occ).sum()
            assert iou >= 0.8, f"{m}: IoU {iou:.3f} of the decoded posterior mean with the training shape"
    finally:
        torch.set_num_threads(threads)


def test_samples_then_interpolation_go_to_their_own_default_folders(tiny_vae_cfg, tmp_path):
    """--samples and --interpolate make different meshes: each has its own default folder, so running
    one after the other needs no --overwrite and keeps both."""
    out_dir = tmp_path / "run"
    shutil.copytree(tiny_vae_cfg["out_dir"], out_dir)
    path = _cfg_file({**tiny_vae_cfg, "out_dir": str(out_dir)}, tmp_path)
    assert _run("generate", path, "--samples", 2) == 0
    assert _run("generate", path, "--interpolate", 3) == 0
    assert sorted(read_codes(out_dir / "generation_samples" / "codes.npz")) == ["sample_000", "sample_001"]
    assert len(read_codes(out_dir / "generation_interpolation" / "codes.npz")) == 3

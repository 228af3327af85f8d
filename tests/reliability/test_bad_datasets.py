"""Datasets with missing files or list entries without folders.

Without data.skip_bad, training stops with one line naming the file; with
data.skip_bad=true it skips, says how many, and finishes. `onet generate` on
the test split skips an object it cannot load and finishes the rest.
tests/training/test_trainer.py::test_skip_bad_counts_broken_objects covers a
corrupt points.npz through the library.
"""

from __future__ import annotations

import shutil

import pytest
import yaml

from onet.config import CONFIG_DIR
from onet.data.formats import read_split

from .helpers import SMALL, assert_one_clear_error, run_cli


@pytest.fixture
def broken(tiny_dataset, tmp_path):
    """A copy of the tiny dataset, and a config (image model) training on it."""
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    cfg = {"inherit_from": str(CONFIG_DIR / "demo.yaml"), "data": {"path": str(data)}}
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    overrides = [*SMALL, "data.img_size=32", "model.encoder_kwargs={width: 8, pretrained: false}"]
    return data, cfg_path, overrides


def _train(cfg_path, overrides, out, *extra):
    return run_cli("train", cfg_path, *overrides, f"out_dir={out}", *extra, "--no-progress")


def test_missing_points_file_stops_training_naming_it(broken, tmp_path):
    data, cfg_path, overrides = broken
    model_id = read_split(data / "table" / "train.lst")[0]
    victim = data / "table" / model_id / "points.npz"
    victim.unlink()
    assert_one_clear_error(_train(cfg_path, overrides, tmp_path / "run"), 1, str(victim), "No such file")


def test_list_entry_without_folder_stops_training_naming_the_list(broken, tmp_path):
    data, cfg_path, overrides = broken
    with open(data / "mug" / "train.lst", "a") as f:
        f.write("\nghost_0042\n")
    res = _train(cfg_path, overrides, tmp_path / "run")
    assert_one_clear_error(res, 1, str(data / "mug" / "train.lst"), "'ghost_0042'", "data.skip_bad=true")
    assert not (tmp_path / "run" / "model.pt").exists()


def test_skip_bad_skips_reports_counts_and_finishes(broken, tmp_path):
    data, cfg_path, overrides = broken
    model_id = read_split(data / "table" / "train.lst")[0]
    (data / "table" / model_id / "points.npz").unlink()
    with open(data / "mug" / "train.lst", "a") as f:
        f.write("ghost_0042\n")
    res = _train(cfg_path, overrides, tmp_path / "run", "data.skip_bad=true")
    assert res.code == 0, res.err
    assert "skipped 1 train objects listed without a folder" in res.out and "ghost_0042" in res.out
    # the object without points.npz fails to load each time it is drawn; each time is counted,
    # and the object is named once
    assert "bad objects (data.skip_bad=true)" in res.out and f"table/{model_id}" in res.out
    assert f"skipping table/{model_id}: " in res.out and "points.npz" in res.out
    assert (tmp_path / "run" / "model.pt").is_file()


def test_generate_on_the_test_split_skips_an_unloadable_object(trained, tiny_dataset, tmp_path):
    """One test object lost its images: it is named in failures.csv, every other object gets its mesh."""
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    tests = [(c, m) for c in ("mug", "table") for m in read_split(data / c / "test.lst")]
    assert len(tests) >= 2
    cat, model_id = tests[0]
    shutil.rmtree(data / cat / model_id / "img_choy2016")
    out = tmp_path / "gen"
    res = run_cli("generate", trained("img"), f"data.path={data}", "--output", out, "--no-progress")
    assert res.code == 1 and not res.errors(), res.err  # the others finished; one item failed: exit 1
    assert f"skipped {cat}/{model_id}:" in res.out and "image folder not found" in res.out
    assert sorted(p.relative_to(out / "meshes").as_posix() for p in (out / "meshes").rglob("*.ply")) == sorted(
        f"{c}/{m}.ply" for c, m in tests[1:])
    assert f"{cat}/{model_id}" in (out / "failures.csv").read_text()


# --------------------------------------------------------------------------- issue 12: non-finite and mis-sized data


def _poison_points(data, cat="table"):
    import numpy as np
    model_id = read_split(data / cat / "train.lst")[0]
    path = data / cat / model_id / "points.npz"
    with np.load(path) as f:
        arrays = dict(f)
    arrays["points"] = arrays["points"].copy()
    arrays["points"][7] = np.nan
    np.savez(path, **arrays)
    return path, f"{cat}/{model_id}"


def test_nan_in_points_stops_training_naming_the_file(broken, tmp_path):
    data, cfg_path, overrides = broken
    victim, _ = _poison_points(data)
    res = _train(cfg_path, overrides, tmp_path / "run")
    assert_one_clear_error(res, 1, str(victim), "points holds 3 NaN/inf values")
    assert not (tmp_path / "run" / "model_best.pt").exists(), "no checkpoint from NaN data"


def test_nan_in_points_is_skipped_under_skip_bad_and_the_model_stays_finite(broken, tmp_path):
    import torch
    from onet.utils.checkpoints import load_checkpoint
    data, cfg_path, overrides = broken
    _, name = _poison_points(data)
    res = _train(cfg_path, overrides, tmp_path / "run", "data.skip_bad=true")
    assert res.code == 0, res.err
    assert f"skipping {name}: " in res.out and "NaN/inf" in res.out
    for ckpt in ("model.pt", "model_best.pt"):
        state = load_checkpoint(tmp_path / "run" / ckpt)
        assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_voxel_grid_of_another_size_stops_training_naming_the_file(tiny_dataset, tmp_path):
    import numpy as np
    from onet.data.formats import write_binvox
    from .helpers import MODEL_CONFIGS
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    model_id = read_split(data / "mug" / "train.lst")[0]
    victim = data / "mug" / model_id / "model.binvox"
    write_binvox(victim, np.ones((16, 16, 16), bool))
    cfg = {"inherit_from": str(CONFIG_DIR / MODEL_CONFIGS["voxels"][0]), "data": {"path": str(data)}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    res = _train(tmp_path / "cfg.yaml", [*SMALL, *MODEL_CONFIGS["voxels"][1]], tmp_path / "run")
    assert_one_clear_error(res, 1, str(victim), "voxel grid is 16x16x16; expected 32x32x32")

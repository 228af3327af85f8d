"""Issue 12: one per-item runner, one output stamp, and eval/generate consistency, through the CLI.

- One bad item never aborts a batch: it is named with its file, recorded
  (failures.csv / the preprocess report) and the others finish; exit code 1
  exactly when an item failed.
- Every output folder records the options that made it (stamp.yaml); a rerun
  with other options is refused naming them, `--overwrite` redoes the work.
- `onet eval` scores what `onet generate` recorded (folder, format), honours
  --device and the data.*_file keys, and a run that matches nothing fails.
"""

from __future__ import annotations

import csv
import shutil
import struct
import zlib

import numpy as np
import pytest
import trimesh
import yaml
from PIL import Image

from onet.cli import main
from onet.config import CONFIG_DIR
from onet.data.formats import read_split

from .helpers import assert_one_clear_error, run_cli

FAST = ["--n-points", "2000", "--n-surface", "500", "--n-views", "2", "--img-size", "24", "--voxel-resolution", "16",
        "--watertight-resolution", "16", "--no-progress"]


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG claiming width x height pixels: PIL refuses it as a decompression bomb when opening it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def _photos(folder, n, size=32):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"photo_{i}.png")
    return folder


def _failures(folder) -> dict[str, dict]:
    path = folder / "failures.csv"
    return {row["name"]: row for row in csv.DictReader(path.open())} if path.is_file() else {}


def _meshes(folder, fmt="ply"):
    return sorted(p.relative_to(folder / "meshes").as_posix() for p in (folder / "meshes").rglob(f"*.{fmt}"))


# --------------------------------------------------------------------------- one per-item runner


def test_decompression_bomb_image_is_one_failed_item(trained, tmp_path):
    folder = _photos(tmp_path / "in", 2)
    (folder / "bomb.png").write_bytes(_png_header_only(20000, 20000))
    out = tmp_path / "out"
    res = run_cli("generate", trained("img"), "--input", folder, "--output", out, "--no-progress")
    assert res.code == 1 and not res.errors() and "Traceback" not in res.out + res.err, res.err
    assert _meshes(out) == ["photo_0.ply", "photo_1.ply"]
    row = _failures(out)["bomb"]
    assert row["path"] == str(folder / "bomb.png") and "decompression bomb" in row["reason"]
    assert "skipped bomb:" in res.out


def test_a_batch_that_breaks_in_extraction_names_the_one_object(trained, tmp_path, monkeypatch):
    """Objects are meshed in batches; when a batch fails, each is retried alone so only the culprit fails."""
    import onet.generation.run as generation_run
    real = generation_run._extract_batch

    def fragile(model, batch, cfg, dev, governor=None):
        if any(job.name == "photo_2" for job in batch):
            raise RuntimeError("the marching cubes of photo_2 blew up")
        return real(model, batch, cfg, dev, governor)

    monkeypatch.setattr(generation_run, "_extract_batch", fragile)
    out = tmp_path / "out"
    res = run_cli("generate", trained("img"), "generation.batch_size=4", "--input", _photos(tmp_path / "in", 4),
                  "--output", out, "--no-progress")
    assert res.code == 1 and not res.errors(), res.err
    assert _meshes(out) == ["photo_0.ply", "photo_1.ply", "photo_3.ply"]
    assert "RuntimeError: the marching cubes of photo_2 blew up" in _failures(out)["photo_2"]["reason"]


@pytest.mark.parametrize("verb", ["preprocess", "generate", "eval"])
def test_each_batch_verb_states_the_rule_in_its_help(verb, capsys):
    with pytest.raises(SystemExit):
        main([verb, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "reported by name and skipped" in text and "1 when any item failed" in text


def test_all_good_is_exit_0_and_leaves_no_failure_list(trained, tmp_path):
    out = tmp_path / "out"
    res = run_cli("generate", trained("img"), "--input", _photos(tmp_path / "in", 2), "--output", out, "--no-progress")
    assert res.code == 0, res.err
    assert not (out / "failures.csv").exists()


def _sphere_pair(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    for folder in (pred, gt):
        folder.mkdir()
    for name, radius in (("a", 0.4), ("b", 0.3)):
        trimesh.creation.icosphere(subdivisions=2, radius=radius).export(gt / f"{name}.ply")
        trimesh.creation.icosphere(subdivisions=2, radius=radius * 0.9).export(pred / f"{name}.ply")
    return pred, gt


def test_eval_pred_folder_with_a_nan_vertex_mesh_scores_the_others(tmp_path):
    pred, gt = _sphere_pair(tmp_path)
    bad = trimesh.creation.icosphere(subdivisions=2, radius=0.3)
    vertices = bad.vertices.copy()
    vertices[5] = np.nan
    (pred / "b.ply").write_text("ply\nformat ascii 1.0\nelement vertex %d\nproperty float x\nproperty float y\n"
                                "property float z\nelement face %d\nproperty list uchar int vertex_indices\nend_header\n"
                                % (len(vertices), len(bad.faces))
                                + "".join(f"{x} {y} {z}\n" for x, y, z in vertices)
                                + "".join(f"3 {a} {b} {c}\n" for a, b, c in bad.faces))
    out = tmp_path / "eval"
    res = run_cli("eval", "--pred", pred, "--gt", gt, "--output", out, "--no-progress", "evaluation.n_points=2000")
    assert res.code == 1 and not res.errors() and "Traceback" not in res.out + res.err, res.err
    row = _failures(out)["b"]
    assert row["path"] == str(pred / "b.ply") and "vertices holds 3 NaN/inf values" in row["reason"]
    per_object = {r["model_id"]: r for r in csv.DictReader((out / "eval_meshes.csv").open())}
    assert per_object["a"]["status"] == "ok" and per_object["b"]["status"] == "unreadable"


def test_eval_with_nothing_matched_exits_1(tmp_path):
    pred, gt = _sphere_pair(tmp_path)
    for p in pred.iterdir():
        p.rename(p.with_name("other_" + p.name))
    res = run_cli("eval", "--pred", pred, "--gt", gt, "--output", tmp_path / "eval", "--no-progress")
    assert_one_clear_error(res, 1, "no prediction", "matches a reference", str(pred))
    assert not (tmp_path / "eval").exists()


# --------------------------------------------------------------------------- stamps and --overwrite


def test_generate_rerun_with_other_options_is_refused_and_overwrite_redoes(trained, tmp_path):
    folder, out = _photos(tmp_path / "in", 2), tmp_path / "out"
    cfg = trained("img")
    assert run_cli("generate", cfg, "--input", folder, "--output", out, "--no-progress").code == 0
    first = {p: p.stat().st_mtime_ns for p in (out / "meshes").iterdir()}

    same = run_cli("generate", cfg, "--input", folder, "--output", out, "--no-progress")
    assert same.code == 0 and "generating the remaining 0" in same.out
    for changed, fragments in (
            (["generation.resolution_0=6"], ["generation.resolution_0: 8 -> 6"]),
            (["test.threshold=0.3"], ["threshold: 0.2 -> 0.3"]),
            (["generation.logit_margin=1.5"], ["generation.logit_margin"]),  # stamped only when on
            (["seed=3"], ["seed: 0 -> 3"]),
            (["--format", "obj"], ["mesh_format: 'ply' -> 'obj'"])):
        res = run_cli("generate", cfg, "--input", folder, "--output", out, "--no-progress", *changed)
        assert_one_clear_error(res, 2, str(out), *fragments, "--overwrite")
    assert {p: p.stat().st_mtime_ns for p in (out / "meshes").iterdir()} == first, "a refused run changes nothing"

    res = run_cli("generate", cfg, "--input", folder, "--output", out, "--no-progress", "--format", "obj",
                  "--overwrite")
    assert res.code == 0 and "wrote 2 meshes" in res.out, res.err
    assert _meshes(out, "obj") == ["photo_0.obj", "photo_1.obj"] and _meshes(out, "ply") == []
    assert yaml.safe_load((out / "stamp.yaml").read_text())["options"]["mesh_format"] == "obj"


def test_preprocess_rerun_with_other_options_is_refused_and_overwrite_redoes(tmp_path):
    from onet.data.formats import load_points_npz
    src, out = tmp_path / "in" / "things", tmp_path / "out"
    src.mkdir(parents=True)
    trimesh.creation.box().export(src / "box.obj")
    assert run_cli("preprocess", tmp_path / "in", out, *FAST).code == 0
    again = run_cli("preprocess", tmp_path / "in", out, *FAST)
    assert again.code == 0 and "skipped 1 already complete" in again.out
    res = run_cli("preprocess", tmp_path / "in", out, *FAST, "--n-points", "1000", "--n-views", "1")
    assert_one_clear_error(res, 2, str(out), "n_points: 2000 -> 1000", "n_views: 2 -> 1", "--overwrite")
    res = run_cli("preprocess", tmp_path / "in", out, *FAST, "--n-points", "1000", "--n-views", "1", "--overwrite")
    assert res.code == 0 and "preprocessed 1 objects" in res.out, res.out + res.err
    assert load_points_npz(out / "things" / "box" / "points.npz")["points"].shape == (1000, 3)
    assert sorted(p.name for p in (out / "things" / "box" / "img_choy2016").iterdir()) == ["000.jpg", "cameras.npz"]


# --------------------------------------------------------------------------- preprocess reporting


def test_preprocess_output_inside_input_is_refused(tmp_path):
    src = tmp_path / "in" / "things"
    src.mkdir(parents=True)
    trimesh.creation.box().export(src / "box.obj")
    res = run_cli("preprocess", tmp_path / "in", tmp_path / "in" / "dataset", *FAST)
    assert_one_clear_error(res, 2, "is inside INPUT", str(tmp_path / "in"))
    assert not (tmp_path / "in" / "dataset").exists()


def test_a_decompression_bomb_in_a_dataset_is_named(tmp_path):
    from onet.data.dataset import load_image
    from onet.data.formats import DataFormatError
    (tmp_path / "000.png").write_bytes(_png_header_only(20000, 20000))
    with pytest.raises(DataFormatError, match="000.png: cannot read image .*decompression bomb"):
        load_image(tmp_path / "000.png", 32)


def test_preprocess_reports_broken_symlinks_and_empty_splits(tmp_path):
    src, out = tmp_path / "in" / "things", tmp_path / "out"
    src.mkdir(parents=True)
    trimesh.creation.box().export(src / "box.obj")
    (src / "gone.obj").symlink_to(tmp_path / "deleted.obj")
    res = run_cli("preprocess", tmp_path / "in", out, *FAST)
    assert res.code == 1 and not res.errors(), res.err
    assert any("things/gone" in line and "broken symbolic link" in line for line in res.out.splitlines())
    assert "warning: category things: the val/test splits are empty (1 objects in all)" in res.out


@pytest.mark.parametrize("lst, fragment", [("box\nbox\n", "listed twice"), ("../box\n", "plain folder name")])
def test_preprocess_split_lists_with_duplicate_or_path_ids_are_errors(tmp_path, lst, fragment):
    src, splits = tmp_path / "in" / "things", tmp_path / "splits"
    src.mkdir(parents=True)
    splits.mkdir()
    trimesh.creation.box().export(src / "box.obj")
    for split in ("train", "val", "test"):
        (splits / f"{split}.lst").write_text(lst if split == "train" else "")
    res = run_cli("preprocess", tmp_path / "in", tmp_path / "out", *FAST, "--splits-from", splits)
    assert_one_clear_error(res, 1, str(splits / "train.lst"), fragment)


# --------------------------------------------------------------------------- eval and generate agree


def _own_config(trained_cfg, tmp_path, **changes) -> str:
    """A copy of a trained model's config.yaml (and run folder) under tmp_path, with top-level changes."""
    run = tmp_path / "run"
    # the model's files only: other tests generate with the shared model and leave their records there
    shutil.copytree(trained_cfg.parent, run, ignore=shutil.ignore_patterns("generation*", "last_generation.yaml",
                                                                         "eval"))
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg.update(out_dir=str(run), **changes)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    return run / "config.yaml"


def test_eval_finds_the_meshes_of_generate_format_and_output(trained, tmp_path):
    cfg = _own_config(trained("img"), tmp_path)
    elsewhere = tmp_path / "my_meshes"
    res = run_cli("generate", cfg, "--format", "obj", "--output", elsewhere, "--no-progress")
    assert res.code == 0, res.err
    res = run_cli("eval", cfg, "--no-progress", "evaluation.n_points=2000")
    assert res.code == 0, res.err
    assert f"scoring the obj meshes in {elsewhere / 'meshes'}" in res.out
    rows = list(csv.DictReader((tmp_path / "run" / "eval" / "eval_meshes.csv").open()))
    assert rows and all(r["status"] in ("ok", "empty") for r in rows)


def test_a_run_folder_moved_after_generating_resumes_and_scores_its_own_meshes(trained, tmp_path):
    # a copy of a run folder (rsync from a cluster, a backup): its generation resumes (the stamp's
    # checkpoint path differs, its digest does not), and last_generation.yaml, which keeps a folder
    # inside out_dir relative to it, sends eval to the copy's meshes, not the original's (still here)
    cfg = _own_config(trained("img"), tmp_path)
    assert run_cli("generate", cfg, "--no-progress").code == 0
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "run", moved)  # its config.yaml still says out_dir: .../run (onet.config)
    again = run_cli("generate", moved / "config.yaml", "--no-progress")
    assert again.code == 0 and "generating the remaining 0" in again.out, again.err
    res = run_cli("eval", moved / "config.yaml", "--no-progress", "evaluation.n_points=2000")
    assert res.code == 0, res.err
    assert f"scoring the ply meshes in {moved / 'generation' / 'meshes'}" in res.out, res.out


def test_eval_reads_the_configured_reference_file_names(trained, tiny_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    for points in data.rglob("points.npz"):
        points.rename(points.with_name("occupancy.npz"))
    for cloud in data.rglob("pointcloud.npz"):
        cloud.rename(cloud.with_name("surface.npz"))
    cfg = _own_config(trained("img"), tmp_path)
    files = [f"data.path={data}", "data.points_file=occupancy.npz", "data.pointcloud_file=surface.npz"]
    assert run_cli("generate", cfg, *files, "--no-progress").code == 0
    res = run_cli("eval", cfg, *files, "--no-progress", "evaluation.n_points=2000")
    assert res.code == 0, res.out + res.err


def test_eval_with_no_generated_mesh_for_the_split_exits_1(trained, tmp_path):
    cfg = _own_config(trained("img"), tmp_path)
    (tmp_path / "run" / "generation" / "meshes" / "mug").mkdir(parents=True)
    trimesh.creation.box().export(tmp_path / "run" / "generation" / "meshes" / "mug" / "not_in_the_split.ply")
    res = run_cli("eval", cfg, "--no-progress")
    assert_one_clear_error(res, 1, "no predicted meshes found", "run `onet generate` first")


def test_eval_honours_device(trained, tmp_path):
    import torch
    cfg = _own_config(trained("img"), tmp_path, device="cuda")
    res = run_cli("eval", cfg, "--sweep", "--device", "cpu", "--no-progress")
    assert res.code == 0 and "best tau" in res.out, res.err
    if not torch.cuda.is_available():
        res = run_cli("eval", _own_config(trained("img"), tmp_path / "b"), "--device", "cuda", "--no-progress")
        assert_one_clear_error(res, 1, "no CUDA GPU")


def test_eval_input_on_an_image_model_is_a_usage_error_before_the_dataset(trained, tmp_path):
    cfg = _own_config(trained("img"), tmp_path)
    res = run_cli("eval", cfg, "--eval-input", f"data.path={tmp_path / 'nowhere'}", "--no-progress")
    assert_one_clear_error(res, 2, "--eval-input scores voxel or point-cloud inputs", "'img'")


def test_unconditional_generate_on_the_test_split_needs_samples(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"inherit_from": str(CONFIG_DIR / "unconditional.yaml"),
                                   "out_dir": str(tmp_path / "out")}))
    res = run_cli("generate", cfg, "--no-progress")
    assert_one_clear_error(res, 2, "unconditional model", "--samples N")
    assert not (tmp_path / "out").exists()


def test_generate_output_inside_input_is_refused(trained, tmp_path):
    folder = _photos(tmp_path / "in", 1)
    for out in (folder, folder / "meshes_here"):
        res = run_cli("generate", trained("img"), "--input", folder, "--output", out, "--no-progress")
        assert_one_clear_error(res, 2, "is inside --input", str(folder))
    assert sorted(p.name for p in folder.iterdir()) == ["photo_0.png"]


def test_simplification_that_misses_its_target_warns_and_records(trained, tmp_path, monkeypatch):
    import fast_simplification

    monkeypatch.setattr(fast_simplification, "simplify", lambda v, f, target_count: (v, f))  # gives up at once
    out = tmp_path / "out"
    res = run_cli("generate", trained("img"), "generation.simplify_nfaces=4", "--input", _photos(tmp_path / "in", 1),
                  "--output", out, "--no-progress")
    assert res.code == 0, res.err
    rows = list(csv.DictReader((out / "warnings.csv").open()))
    assert [r["name"] for r in rows] == ["photo_0"] and "above its target generation.simplify_nfaces=4" in rows[0]["reason"]
    assert "warning: photo_0: simplification stopped at" in res.out


def test_skip_bad_generate_names_listed_objects_without_folder(trained, tiny_dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    with open(data / "mug" / "test.lst", "a") as f:
        f.write("ghost_0042\n")
    out = tmp_path / "gen"
    res = run_cli("generate", trained("img"), f"data.path={data}", "data.skip_bad=true", "--output", out,
                  "--no-progress")
    assert res.code == 1 and not res.errors(), res.err
    assert "mug/ghost_0042" in _failures(out)
    assert len(_meshes(out)) == sum(len(read_split(data / c / "test.lst")) for c in ("mug", "table")) - 1

"""The command line as a user runs it: help, exit codes, one smoke run per verb."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from onet.cli import main

VERBS = ["preprocess", "train", "generate", "eval", "compare", "demo", "import-checkpoint", "report"]


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "onet", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("verb", VERBS)
def test_every_verb_has_help_with_examples(verb, capsys):
    with pytest.raises(SystemExit) as exc:
        main([verb, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"onet {verb}" in out


def test_usage_errors_exit_2(tmp_path):
    assert run("no-such-verb").returncode == 2
    res = run("train", tmp_path / "missing.yaml")
    assert res.returncode == 2 and "missing.yaml" in res.stderr and "Traceback" not in res.stderr
    res = run("eval")
    assert res.returncode == 2 and "--pred" in res.stderr


def test_runtime_failure_exits_1_with_one_line_and_debug_shows_traceback(tmp_path):
    res = run("generate", "configs/demo.yaml", f"out_dir={tmp_path}")
    assert res.returncode == 1
    assert "checkpoint not found" in res.stderr and "Traceback" not in res.stderr
    res = run("generate", "configs/demo.yaml", f"out_dir={tmp_path}", "--debug")
    assert res.returncode == 1 and "Traceback" in res.stderr


def test_train_generate_eval_end_to_end(tiny_cfg, tmp_path):
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_cfg))
    out = tmp_path / "run"
    assert run("train", cfg_path, "--no-progress").returncode == 0

    res = run("generate", cfg_path, "--no-progress")
    assert res.returncode == 0, res.stderr
    meshes = sorted((out / "generation" / "meshes").rglob("*.ply"))
    assert len(meshes) == sum(len((tiny_cfg_root(tiny_cfg) / c / "test.lst").read_text().split())
                              for c in ("table", "mug"))
    assert (out / "generation" / "time_generation.csv").is_file()
    assert len(list((out / "generation" / "previews").rglob("*.png"))) == len(meshes)
    # a second run resumes: nothing left to do
    res = run("generate", cfg_path, "--no-progress")
    assert res.returncode == 0 and "generating the remaining 0" in res.stdout

    res = run("eval", cfg_path, "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "IoU" in res.stdout and "Chamfer" in res.stdout
    for name in ("eval_meshes.csv", "eval_classes.csv", "eval_classes.md", "eval_classes.tex", "eval.json"):
        assert (out / "eval" / name).is_file()


def tiny_cfg_root(cfg):
    from pathlib import Path
    return Path(cfg["data"]["path"])


def test_generate_on_a_folder_with_good_and_bad_images(tiny_cfg, tmp_path):
    from onet.training import train
    train(tiny_cfg, progress=False, log=lambda *a: None)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_cfg))
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(images / "rgb.png")
    Image.fromarray(rng.integers(0, 255, (40, 40, 4), dtype=np.uint8), mode="RGBA").save(images / "rgba.png")
    Image.fromarray(rng.integers(0, 255, (33, 33), dtype=np.uint8), mode="L").save(images / "gray.jpg")
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (images / "empty.jpg").write_bytes(b"")
    res = run("generate", cfg_path, "--input", images, "--no-progress", "--format", "obj")
    assert res.returncode == 1, res.stderr  # the good images are meshed; two items failed: exit 1
    out = tmp_path / "run" / "generation_input"
    assert sorted(p.name for p in (out / "meshes").iterdir()) == ["gray.obj", "rgb.obj", "rgba.obj"]
    assert "broken" in res.stdout and "empty" in res.stdout
    failures = (out / "failures.csv").read_text()
    assert "broken" in failures and "empty" in failures


TINY_DEMO = ["data.img_size=32", "data.points_subsample=128", "data.points_iou_subsample=500",
             "model.encoder_kwargs={width: 8, pretrained: false}", "model.decoder_kwargs={hidden_size: 16, n_blocks: 1}",
             "model.c_dim=8", "train.batch_size=4", "train.max_iters=2", "generation.resolution_0=8",
             "generation.upsampling_steps=1", "evaluation.n_points=1000"]


def _tiny_demo(tmp_path, lines: list) -> int:
    from onet.demo import run_demo
    return run_demo(out_dir=tmp_path / "demo", data_dir=tmp_path / "data", n_per_class=4, classes=["table", "mug"],
                    n_views=3, img_size=32, n_points=3000, progress=False, log=lines.append, overrides=TINY_DEMO)


def test_demo_runs_end_to_end_on_tiny_settings(tmp_path):
    lines = []
    code = _tiny_demo(tmp_path, lines)
    assert code == 0
    text = "\n".join(lines)
    assert "IoU" in text and "demo finished" in text
    # the summary gives each stage's minutes, which add up to the total
    total, stages = re.search(r"demo finished in ([0-9.]+) min \(([^)]*)\)", text).groups()
    minutes = dict(part.rsplit(" ", 1) for part in stages.split(", "))
    assert list(minutes) == ["dataset", "training", "threshold and meshes", "evaluation"]
    assert abs(sum(map(float, minutes.values())) - float(total)) <= 0.25
    # 2 iterations end before the trainer has timed its pace: the demo says so, no number is made up
    assert "training 2 iterations (fewer, not below 2, if they would not end within the demo's 13 minutes" in text
    assert "how long they take" in text and "s per iteration" not in text
    assert "trained 2 iterations (best val IoU" in text  # not cut: the budget is far away
    # tau chosen on the validation split (the fast sweep) and used for the meshes
    chosen = float(text.split("threshold tau = ")[1].split(",")[0])
    sweep = json.loads((tmp_path / "demo" / "eval" / "sweep" / "sweep.json").read_text())
    assert chosen == sweep["best_tau"]
    stamp = yaml.safe_load((tmp_path / "demo" / "generation" / "stamp.yaml").read_text())
    assert stamp["options"]["threshold"] == chosen
    assert list((tmp_path / "demo" / "generation_input" / "meshes").glob("*.ply"))
    assert list((tmp_path / "demo" / "generation" / "previews").rglob("*.png"))


def test_demo_says_when_its_time_budget_ended_training(tmp_path, monkeypatch):
    import onet.demo
    monkeypatch.setattr(onet.demo, "training_budget", lambda tcfg, overrides, elapsed: (1e-6, 1))
    lines = []
    assert _tiny_demo(tmp_path, lines) == 0
    assert "trained 1 of 2 iterations (the time budget)" in "\n".join(lines)


def test_demo_training_budget_ends_the_demo_in_time_with_a_floor():
    from onet.demo import AFTER_TRAINING_MINUTES, DEMO_MINUTES, training_budget
    tcfg = {"max_iters": 2000, "min_iters": None, "max_time": None}
    seconds, floor = training_budget(tcfg, [], elapsed=40.0)
    assert seconds == pytest.approx((DEMO_MINUTES - AFTER_TRAINING_MINUTES) * 60 - 40.0) and floor == 1700
    # the user's own keys win: a time limit of theirs (or none) means no budget; their floor is kept
    assert training_budget(tcfg, ["train.max_time=null"], elapsed=40.0) is None
    assert training_budget(tcfg, [" train.max_time = 900"], elapsed=40.0) is None
    assert training_budget({**tcfg, "min_iters": 1200}, ["train.min_iters=1200"], elapsed=40.0)[1] == 1200
    assert training_budget({**tcfg, "max_iters": None}, [], elapsed=40.0) is None  # no count: nothing to cut
    assert training_budget(tcfg, [], elapsed=3600.0)[0] == 60.0  # a very slow dataset build: a minute, the floor


def test_preprocess_output_trains_unchanged(tmp_path):
    """Real (non-synthetic) meshes -> `onet preprocess` -> `onet train` on the result, with no edits."""
    import trimesh
    src = tmp_path / "meshes" / "things"
    src.mkdir(parents=True)
    shapes = [trimesh.creation.box(extents=(1, 0.5 + 0.1 * i, 0.3)) for i in range(5)]
    shapes += [trimesh.creation.cylinder(0.2 + 0.05 * i, 1.0) for i in range(5)]
    for i, mesh in enumerate(shapes):
        mesh.export(src / f"thing_{i}.{'obj' if i % 2 else 'ply'}")
    out = tmp_path / "dataset"
    res = run("preprocess", tmp_path / "meshes", out, "--n-points", 2000, "--n-surface", 1000, "--n-views", 2,
              "--img-size", 32, "--watertight-resolution", 48, "--depth", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "preprocessed 10 objects" in res.stdout
    assert len(list(out.glob("things/*/img_choy2016/depth.npz"))) == 10  # beside the images: loaders skip it
    for split in ("train", "val", "test"):
        assert (out / "things" / f"{split}.lst").read_text().split()
    common = [f"data.path={out}", "train.max_iters=2", "train.batch_size=2", "data.points_subsample=64",
              "data.points_iou_subsample=200", "model.decoder_kwargs={hidden_size: 16, n_blocks: 1}",
              "model.c_dim=16", "--no-progress"]
    res = run("train", "configs/pointcloud.yaml", f"out_dir={tmp_path / 'pc'}", "model.encoder_kwargs={hidden_dim: 16}",
              *common)
    assert res.returncode == 0, res.stderr
    res = run("train", "configs/img.yaml", f"out_dir={tmp_path / 'img'}", "data.img_size=32", "data.img_folder=img_choy2016",
              "model.encoder_kwargs={pretrained: false, width: 8}", *common)
    assert res.returncode == 0, res.stderr
    res = run("train", "configs/voxels.yaml", f"out_dir={tmp_path / 'vox'}", *common)
    assert res.returncode == 0, res.stderr


def test_preprocess_near_surface_flags_and_training_mix(tmp_path):
    import trimesh
    src = tmp_path / "meshes" / "things"
    src.mkdir(parents=True)
    for i in range(4):
        trimesh.creation.box(extents=(1, 0.2 + 0.1 * i, 0.05)).export(src / f"plate_{i}.obj")
    out = tmp_path / "dataset"
    small = ["--n-points", 2000, "--n-surface", 1000, "--n-views", 1, "--img-size", 32,
             "--watertight-resolution", 32, "--no-progress"]
    res = run("preprocess", tmp_path / "meshes", out, "--near-sigma", "0.01,x", *small)
    assert res.returncode == 2 and "--near-sigma" in res.stderr
    res = run("preprocess", tmp_path / "meshes", out, "--near-surface", 800, "--near-sigma", "0.01,0.05", *small)
    assert res.returncode == 0, res.stderr
    from onet.data.formats import load_points_npz
    near = load_points_npz(out / "things" / "plate_0" / "points_near_surface.npz")
    assert near["points"].shape == (800, 3)
    assert load_points_npz(out / "things" / "plate_0" / "points.npz")["points"].shape == (2000, 3)
    res = run("train", "configs/pointcloud.yaml", f"out_dir={tmp_path / 'pc'}", f"data.path={out}",
              "data.points_near_surface_ratio=0.5", "train.max_iters=2", "train.batch_size=2",
              "data.points_subsample=64", "data.points_iou_subsample=200", "model.encoder_kwargs={hidden_dim: 16}",
              "model.decoder_kwargs={hidden_size: 16, n_blocks: 1}", "model.c_dim=16", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "have no points_near_surface.npz" not in res.stdout + res.stderr
    res = run("train", "configs/pointcloud.yaml", f"out_dir={tmp_path / 'bad'}", f"data.path={out}",
              "data.points_near_surface_ratio=2")
    assert res.returncode == 2 and "data.points_near_surface_ratio" in res.stderr


def test_cpu_point_cloud_config_trains_generates_and_evaluates(tmp_path):
    """configs/pointcloud_cpu.yaml (local features: planes that `make_eval_fn`, refinement and
    normals read instead of a code vector) through train -> generate -> eval, shrunk."""
    import trimesh
    src = tmp_path / "meshes" / "things"
    src.mkdir(parents=True)
    for i in range(5):
        trimesh.creation.box(extents=(0.8, 0.3 + 0.1 * i, 0.4)).export(src / f"box_{i}.obj")
    data = tmp_path / "dataset"
    res = run("preprocess", tmp_path / "meshes", data, "--n-points", 2000, "--n-surface", 1000, "--n-views", 1,
              "--img-size", 32, "--watertight-resolution", 32, "--near-surface", 500, "--no-progress")
    assert res.returncode == 0, res.stderr
    common = [f"data.path={data}", f"out_dir={tmp_path / 'run'}", "train.max_cpu_time=null", "train.max_iters=3",
              "train.batch_size=4", "data.points_subsample=128", "data.points_iou_subsample=500",
              "model.encoder_kwargs={hidden_dim: 8, plane_resolution: 8, unet_levels: 2, unet_channels: 4}",
              "model.decoder_kwargs={hidden_size: 8, n_blocks: 2}", "model.c_dim=8",
              "generation.resolution_0=8", "generation.upsampling_steps=1", "generation.refinement_step=2",
              "generation.vertex_normals=true", "evaluation.n_points=2000", "--no-progress"]
    # trained as 2 single-threaded processes (train.cpu_processes; auto would give 1 for a batch of 2)
    res = run("train", "configs/pointcloud_cpu.yaml", *common, "train.cpu_processes=2")
    assert res.returncode == 0, res.stderr
    assert "training as 2 processes x 1 thread" in res.stdout
    from onet.utils.checkpoints import load_checkpoint
    assert load_checkpoint(tmp_path / "run" / "model.pt")["it"] == 3
    res = run("train", "configs/pointcloud_cpu.yaml", *common, "train.cpu_processes=3", "train.max_iters=4")
    assert res.returncode == 2 and "train.cpu_processes" in res.stderr and "training as" not in res.stdout
    res = run("generate", "configs/pointcloud_cpu.yaml", *common)
    assert res.returncode == 0, res.stderr
    assert len(list((tmp_path / "run" / "generation" / "meshes").rglob("*.ply"))) >= 1
    res = run("eval", "configs/pointcloud_cpu.yaml", *common)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "run" / "eval" / "eval.json").is_file()


def test_entry_leaves_torchrun_processes_through_os_exit(monkeypatch):
    """Under torchrun (WORLD_SIZE > 1) the console entry exits with os._exit after flushing, so a
    finished rank never meets interpreter finalisation (gloo threads could abort it there); a
    plain run exits normally with main()'s code."""
    from onet import cli

    class Exited(Exception):
        pass

    calls = []

    def fake_exit(code):
        calls.append(code)
        raise Exited

    monkeypatch.setattr(cli, "main", lambda: 3)
    monkeypatch.setattr(cli.os, "_exit", fake_exit)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(Exited):
        cli.entry()
    assert calls == [3]
    for world in ("1", ""):
        monkeypatch.setenv("WORLD_SIZE", world)
        with pytest.raises(SystemExit) as exc:
            cli.entry()
        assert exc.value.code == 3 and calls == [3]
    monkeypatch.delenv("WORLD_SIZE")
    with pytest.raises(SystemExit):
        cli.entry()
    assert calls == [3]

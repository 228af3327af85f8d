"""ONet, 3D-R2N2 and PSGN through train -> generate -> eval -> compare on the built-in synthetic data."""

import pytest

from onet.cli import main

TINY = ["data.img_size=32", "data.points_iou_subsample=1000", "model.encoder_kwargs={width: 8, pretrained: false}",
        "model.c_dim=16", "train.batch_size=4", "train.max_iters=3", "train.validate_every=3",
        "train.checkpoint_every=3", "train.max_time=null", "evaluation.n_points=2000", "generation.resolution_0=8",
        "generation.upsampling_steps=1"]
MODELS = {
    "ONet": ("demo.yaml", ["model.decoder_kwargs={hidden_size: 16, n_blocks: 1}"]),
    "3D-R2N2": ("baselines/r2n2_demo.yaml", ["model.decoder_kwargs={hidden_size: 16}"]),
    "PSGN": ("baselines/psgn_demo.yaml", ["model.decoder_kwargs={hidden_size: 16, n_points: 128}",
                                          "data.pointcloud_target_n=128"]),
}


def md_rows(text):
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("|:"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


@pytest.fixture(scope="module")
def three_runs(tiny_dataset, tmp_path_factory):
    from onet.config import CONFIG_DIR
    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for name, (config, extra) in MODELS.items():
        out = root / name
        args = [str(CONFIG_DIR / config), f"out_dir={out}", f"data.path={tiny_dataset}", *TINY, *extra, "--no-progress"]
        for verb in ("train", "generate", "eval"):
            assert main([verb, *args]) == 0, (name, verb)
        runs[name] = out
    return runs


def test_compare_prints_each_runs_own_eval_numbers(three_runs, capsys):
    capsys.readouterr()
    assert main(["compare", *map(str, three_runs.values())]) == 0
    table = md_rows(capsys.readouterr().out)
    header = table.pop("Method")
    assert header == ["IoU", "Chamfer-L1 x10", "Normal Consistency"]
    assert list(table) == list(three_runs)
    for name, out in three_runs.items():
        own = md_rows((out / "eval" / "eval_classes.md").read_text())
        mean = dict(zip(own.pop("Class"), own["mean (classes)"]))
        assert table[name] == [mean.get(label, "–") for label in header], name
    assert table["PSGN"][0] == table["PSGN"][2] == "–"  # a point set has no IoU and no normals
    own = md_rows((three_runs["PSGN"] / "eval" / "eval_classes.md").read_text())
    assert own["mean (classes)"][0] == own["mean (classes)"][2] == "–"  # `onet eval` prints "–" too


def test_compare_refuses_a_folder_without_eval_results(three_runs, tmp_path, capsys):
    (tmp_path / "untrained").mkdir()
    assert main(["compare", str(three_runs["ONet"]), str(tmp_path / "untrained")]) == 2
    assert f"{tmp_path / 'untrained'}: no evaluation results" in capsys.readouterr().err


def test_point_sets_are_written_as_vertex_only_files(three_runs):
    from onet.geometry.mesh_files import read_mesh
    files = sorted((three_runs["PSGN"] / "generation" / "meshes").rglob("*.ply"))
    vertices, faces = read_mesh(files[0])
    assert vertices.shape == (128, 3) and faces.shape == (0, 3)
    previews = sorted((three_runs["PSGN"] / "generation" / "previews").rglob("*.png"))
    assert len(previews) == len(files)

"""End-to-end evaluation on a tiny dataset made in tmp_path (DESIGN §4 layout)."""

import csv
import json

import numpy as np
import pytest
import trimesh

from onet.evaluation.evaluate import evaluate_dataset, evaluate_inputs, evaluate_pairs

N = 20_000  # points per file: small to keep the test fast
OBJECTS = {"03001627": {"a": 0.40, "b": 0.30}, "02691156": {"c": 0.35}}  # sphere radius per object


def _write_sphere_object(folder, radius, seed):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    points = rng.uniform(-0.55, 0.55, size=(N, 3)).astype(np.float16)
    occupancies = np.linalg.norm(points.astype(np.float64), axis=1) < radius
    np.savez(folder / "points.npz", points=points, occupancies=np.packbits(occupancies),
             loc=np.zeros(3), scale=np.array(1.0))
    normals = rng.standard_normal((N, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    np.savez(folder / "pointcloud.npz", points=(radius * normals).astype(np.float16),
             normals=normals.astype(np.float16), loc=np.zeros(3), scale=np.array(1.0))


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "data"
    seed = 0
    for category, objects in OBJECTS.items():
        for model_id, radius in objects.items():
            _write_sphere_object(root / category / model_id, radius, seed)
            seed += 1
    (root / "metadata.yaml").write_text('03001627: {id: "03001627", name: "chair,seat"}\n'
                                        '02691156: {id: "02691156", name: "airplane,aeroplane"}\n')
    return root


def _items():
    return [(c, m) for c, objects in OBJECTS.items() for m in objects]


def test_evaluate_dataset_with_a_missing_prediction(dataset, tmp_path):
    meshes = tmp_path / "meshes"
    for category, model_id in [("03001627", "a"), ("03001627", "b")]:
        (meshes / category).mkdir(parents=True, exist_ok=True)
        sphere = trimesh.creation.icosphere(subdivisions=4, radius=OBJECTS[category][model_id])
        sphere.export(meshes / category / f"{model_id}.ply")
    # 02691156/c has no prediction
    out = tmp_path / "eval"
    result = evaluate_dataset(dataset, _items(), meshes, out, n_points=10_000, progress=False)

    rows = {r.model_id: r for r in result.rows}
    assert rows["a"].status == rows["b"].status == "ok"
    # 20k reference and 10k predicted samples: nearest-sample spacing ~0.005 dominates
    assert rows["a"].metrics.iou > 0.97 and rows["a"].metrics.chamfer_l1 < 0.01
    assert rows["c"].status == "missing" and rows["c"].metrics.empty and rows["c"].metrics.iou == 0.0
    assert any("02691156/c" in p for p in result.problems)

    names = {c.name: c for c in result.table.classes}
    assert set(names) == {"chair", "airplane"}
    assert names["airplane"].n_empty == 1 and names["airplane"].means["iou"] == 0.0
    mean_iou = np.mean([r.metrics.iou for r in result.rows])
    assert result.table.mean_over_objects.means["iou"] == pytest.approx(mean_iou)
    assert result.table.mean_over_objects.count == 3

    for name in ["eval_meshes.csv", "eval_classes.csv", "eval_classes.md", "eval_classes.tex", "eval.json"]:
        assert (out / name).is_file()
    assert (out / "eval_classes.md").read_text() == result.markdown
    assert "1/10 of the box" in result.markdown
    with open(out / "eval_meshes.csv") as f:
        assert len(list(csv.DictReader(f))) == 3
    assert json.loads((out / "eval.json").read_text())["mean_over_objects"]["n_empty"] == 1


def test_unreadable_prediction_and_missing_reference(dataset, tmp_path):
    meshes = tmp_path / "meshes"
    (meshes / "02691156").mkdir(parents=True)
    (meshes / "02691156" / "c.ply").write_bytes(b"ply\nthis is not a mesh\n")
    (meshes / "03001627").mkdir(parents=True)
    trimesh.Trimesh(np.zeros((0, 3)), np.zeros((0, 3), int)).export(meshes / "03001627" / "a.ply")
    items = [("02691156", "c"), ("03001627", "a")]
    result = evaluate_dataset(dataset, items, meshes, tmp_path / "eval", n_points=1000, progress=False)
    assert [r.status for r in result.rows] == ["unreadable", "empty"]
    assert all(r.metrics.empty and r.metrics.iou == 0.0 for r in result.rows)
    assert result.table.mean_over_objects.n_empty == 2
    # the unreadable prediction is a failed item (exit code 1), named with its file
    assert [(f.name, f.path) for f in result.failures] == [("02691156/c", str(meshes / "02691156" / "c.ply"))]
    assert result.exit_code == 1 and (tmp_path / "eval" / "failures.csv").is_file()
    # an object without reference files cannot be scored: a failed item without a row; the others go on
    trimesh.creation.icosphere().export(meshes / "02691156" / "zzz.ply")
    result = evaluate_dataset(dataset, [("02691156", "zzz"), ("03001627", "a")], meshes, tmp_path / "eval",
                              n_points=1000, progress=False)
    assert [r.model_id for r in result.rows] == ["a"]
    assert result.failures[0].name == "02691156/zzz" and "points.npz" in result.failures[0].reason
    with pytest.raises(RuntimeError, match="none of the 1 objects could be evaluated.*points.npz"):
        evaluate_dataset(dataset, [("02691156", "zzz")], meshes, tmp_path / "eval", progress=False)


def test_pointcloud_inputs_have_no_iou(dataset, tmp_path):
    result = evaluate_inputs(dataset, _items(), tmp_path / "eval", input_type="pointcloud", progress=False)
    assert "iou" not in result.table.columns and "normal_consistency" not in result.table.columns
    assert "| – |" in result.markdown and "nan" not in result.markdown.lower()  # IoU and NC print as "–"
    # 300 noisy points on the true surface: accurate (noise ~0.005) but incomplete
    row = result.rows[0].metrics
    assert row.accuracy < 0.01 < row.completeness
    with pytest.raises(ValueError, match="input_type"):
        evaluate_inputs(dataset, _items(), tmp_path / "eval", input_type="img")
    # in worker processes (shares into the records, merged here): the tables of one process
    evaluate_inputs(dataset, _items(), tmp_path / "two", input_type="pointcloud", progress=False, workers=2)
    assert list((tmp_path / "two" / "objects").glob("input_pointcloud.shard*of*.jsonl"))
    for name in ("eval_meshes.csv", "eval_classes.md"):
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "eval" / name).read_bytes(), name


def test_voxel_inputs(dataset, tmp_path):
    pytest.importorskip("onet.geometry.voxelize")
    from onet.data.formats import write_binvox

    centres = (np.arange(32) + 0.5) / 32 - 0.5
    x, y, z = np.meshgrid(centres, centres, centres, indexing="ij")
    for category, model_id in _items():
        radius = OBJECTS[category][model_id]
        write_binvox(dataset / category / model_id / "model.binvox", np.sqrt(x**2 + y**2 + z**2) < radius)
    result = evaluate_inputs(dataset, _items(), tmp_path / "eval", input_type="voxels", n_points=5000, progress=False)
    assert all(r.status == "ok" for r in result.rows)
    assert all(0.7 < r.metrics.iou < 1.0 for r in result.rows)


def test_evaluate_pairs_folders(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    for folder in (pred / "cls", gt / "cls"):
        folder.mkdir(parents=True)
    # a reference at an arbitrary position and scale: numbers come in its normalised frame
    trimesh.creation.icosphere(subdivisions=4, radius=2.0).apply_translation((5, 0, 0)).export(gt / "cls" / "s.ply")
    trimesh.creation.icosphere(subdivisions=4, radius=1.6).apply_translation((5, 0, 0)).export(pred / "cls" / "s.obj")
    trimesh.creation.box().export(gt / "cls" / "lonely.ply")
    trimesh.creation.box().export(pred / "cls" / "extra.ply")
    result = evaluate_pairs(pred, gt, tmp_path / "eval", n_points=10_000, n_iou_points=20_000, progress=False)

    rows = {r.model_id: r for r in result.rows}
    assert set(rows) == {"s", "lonely"} and rows["s"].category == "cls"
    assert rows["s"].metrics.iou == pytest.approx(0.8**3, rel=0.03)
    assert rows["s"].metrics.chamfer_l1 == pytest.approx(0.1, rel=0.03)  # (2.0 - 1.6) / 4.0 box edge
    assert rows["lonely"].status == "missing" and rows["lonely"].metrics.empty
    assert any("extra" in p and "no reference" in p for p in result.problems)
    assert (tmp_path / "eval" / "eval_classes.md").is_file()


def test_evaluate_pairs_warns_once_about_open_references(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    sphere = trimesh.creation.icosphere(subdivisions=3)
    holed = sphere.copy()
    holed.update_faces(np.arange(len(sphere.faces)) >= 40)  # a hole: no inside to score IoU against
    for name in ("open1", "open2"):
        holed.export(gt / f"{name}.ply")
        sphere.export(pred / f"{name}.ply")
    sphere.export(gt / "closed.ply")
    sphere.export(pred / "closed.ply")
    result = evaluate_pairs(pred, gt, tmp_path / "eval", n_points=5_000, n_iou_points=5_000, progress=False)
    assert all(r.status == "ok" for r in result.rows)
    notes = [p for p in result.problems if "not watertight" in p]
    assert len(notes) == 1 and "2 reference" in notes[0] and "open1, open2" in notes[0]
    assert "closed" not in notes[0]

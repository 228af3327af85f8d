"""A small run folder as `onet train / generate / eval --sweep` leave it, built directly (no training)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import trimesh
import yaml
from PIL import Image

from onet.config import CONFIG_DIR, load_config
from onet.geometry.mesh_files import export_mesh

# (category, model_id, IoU): the gallery must show them worst first
OBJECTS = [("chair", "c0", 0.81), ("chair", "c1", 0.35), ("table", "t0", 0.62), ("table", "t1", 0.12)]


def _write_csv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture
def run_folder(tmp_path):
    data = tmp_path / "data"
    out = tmp_path / "run"
    cfg = load_config(CONFIG_DIR / "demo.yaml", [f"out_dir={out}", f"data.path={data}"])
    out.mkdir()
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    _write_csv(out / "metrics.csv", ["it", "epoch", "time", "loss", "val_loss", "val_iou", "skipped"],
               [[10, 1, 5.0, 900.0, "", "", 0], [20, 1, 10.0, 600.0, "", "", 0], [20, 1, 11.0, "", 650.0, 0.31, ""],
                [30, 2, 15.0, 400.0, "", "", 0], [40, 2, 20.0, 350.0, 420.0, 0.52, ""]])
    rng = np.random.default_rng(0)
    timing_rows, object_rows = [], []
    for i, (cat, mid, iou) in enumerate(OBJECTS):
        folder = data / cat / mid
        (folder / "img_choy2016").mkdir(parents=True)
        shape = trimesh.creation.icosphere(subdivisions=2, radius=0.4) if cat == "chair" else \
            trimesh.creation.box(extents=(0.8, 0.3, 0.6))
        if i % 2 == 0:  # a watertight reference mesh for some, surface points only for the others
            export_mesh(folder / "mesh.ply", shape.vertices, shape.faces)
        points, face = trimesh.sample.sample_surface(shape, 5000, seed=i)
        np.savez(folder / "pointcloud.npz", points=points.astype(np.float16),
                 normals=shape.face_normals[face].astype(np.float16), loc=np.zeros(3), scale=np.float64(1))
        view = (rng.uniform(0, 255, size=(137, 137, 3))).astype(np.uint8)
        Image.fromarray(view).save(folder / "img_choy2016" / "000.jpg")
        pred = shape.copy()
        pred.vertices *= 0.9
        export_mesh(out / "generation" / "meshes" / cat / f"{mid}.ply", pred.vertices, pred.faces)
        if i < 3:  # the input copy generate writes (the last object falls back to the dataset's view 0)
            (out / "generation" / "inputs" / cat).mkdir(parents=True, exist_ok=True)
            Image.fromarray(view).save(out / "generation" / "inputs" / cat / f"{mid}.png")
        timing_rows.append([f"{cat}/{mid}", 0.01, 0.5, 0.05, 0, 0, 0, 0.56, 12000, len(pred.vertices), len(pred.faces)])
        object_rows.append([cat, mid, "ok", "", 0, iou, 0.02 + 0.01 * i, 0.9 - 0.05 * i, 0.02, 0.02, 0.001, 0.5])
    _write_csv(out / "generation" / "time_generation.csv",
               ["name", "encode", "evaluate", "marching_cubes", "simplify", "refine", "normals", "total",
                "n_evaluated", "n_vertices", "n_faces"], timing_rows)
    _write_csv(out / "eval" / "eval_meshes.csv",
               ["category", "model_id", "status", "reason", "empty", "iou", "chamfer_l1", "normal_consistency",
                "accuracy", "completeness", "chamfer_l2", "fscore@0.01"], object_rows)
    _write_csv(out / "eval" / "eval_classes.csv",
               ["category", "name", "count", "n_empty", "iou", "chamfer_l1", "normal_consistency", "accuracy",
                "completeness", "fscore@0.01", "chamfer_l2"],
               [["chair", "chair", 2, 0, 0.58, 0.025, 0.875, 0.02, 0.02, 0.5, 0.001],
                ["table", "table", 2, 1, 0.37, 0.045, 0.775, 0.02, 0.02, 0.6, 0.001],
                ["zzz", "aeroplane", 3, 0, 0.75, 0.011, 0.901, 0.02, 0.02, 0.4, 0.001],
                ["mean", "mean (classes)", 7, 1, 0.567, 0.027, 0.850, 0.02, 0.02, 0.5, 0.001],
                ["mean", "mean (objects)", 7, 1, 0.59, 0.025, 0.86, 0.02, 0.02, 0.5, 0.001]])
    (out / "eval" / "sweep").mkdir(parents=True)
    Image.new("RGB", (320, 200), (200, 220, 255)).save(out / "eval" / "sweep" / "sweep.png")
    (out / "eval" / "sweep" / "sweep.json").write_text(json.dumps(
        {"best_tau": 0.25, "criterion": "iou", "best_score": 0.61, "current_threshold": 0.2, "n_objects": 4,
         "split": "val"}))
    return out

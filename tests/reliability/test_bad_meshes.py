"""Bad meshes for `onet preprocess`: each is named with its problem, skipped, and the rest finish.

tests/preprocess/test_pipeline.py checks a ShapeNet tree with broken files at the
library level; here each kind of damage has its own case, and the batch goes
through the command line.
"""

from __future__ import annotations

import os
import struct
import tracemalloc

import numpy as np
import pytest
import trimesh

from onet.data.formats import read_split
from onet.geometry.mesh_io import MeshLoadError, load_mesh
from onet.preprocess.pipeline import read_report

from .helpers import run_cli

FAST = ["--n-points", "2000", "--n-surface", "500", "--n-views", "2", "--img-size", "24", "--voxel-resolution", "16",
        "--no-progress"]


def _obj(vertices, faces) -> str:
    lines = [f"v {x} {y} {z}" for x, y, z in vertices] + [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    return "\n".join(lines) + "\n"


def _binary_stl(triangles: np.ndarray) -> bytes:
    """(F, 3, 3) float -> binary STL bytes."""
    header = b"onet test".ljust(80, b"\0") + struct.pack("<I", len(triangles))
    rec = np.zeros(len(triangles), dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")])
    rec["v"] = triangles
    return header + rec.tobytes()


TRI = [(0, 0, 0), (1, 0, 0), (0, 1, 0)]
NAN_TRI = [(float("nan"), 0, 0), (1, 0, 0), (0, 1, 0)]
COLLINEAR = np.array([[(0, 0, 0), (1, 0, 0), (2, 0, 0)]], dtype=np.float32)
# file name -> (contents, fragment of the problem the message must state)
BAD = {
    "empty.obj": (b"", "file is empty"),
    "allnan.obj": (_obj(NAN_TRI, [(0, 1, 2)]).encode(), "1 use NaN/inf vertices"),
    "allinf.off": (b"OFF\n3 1 0\ninf 0 0\n1 -inf 0\n0 1 0\n3 0 1 2\n", "1 use NaN/inf vertices"),
    "nofaces.ply": (b"ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\n"
                    b"property float z\nend_header\n0 0 0\n1 0 0\n0 1 0\n", "no faces"),
    "degenerate.obj": (_obj(TRI, [(0, 0, 1)]).encode(), "1 are degenerate (zero area)"),
    "collinear.stl": (_binary_stl(COLLINEAR), "1 are degenerate (zero area)"),
    "garbage.stl": (bytes(range(256)) * 16, "unreadable mesh file"),
    "garbage.glb": (np.random.default_rng(0).bytes(4096), "unreadable mesh file"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_mesh_is_rejected_with_file_and_problem(name, tmp_path):
    data, problem = BAD[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(MeshLoadError) as exc:
        load_mesh(path)
    assert str(path) in str(exc.value) and problem in str(exc.value)


def test_nan_vertices_among_good_ones_are_dropped(tmp_path):
    box = trimesh.creation.box()
    vertices = np.vstack([box.vertices, [[np.nan, 0, 0], [np.inf, 1, 1]]])
    faces = np.vstack([box.faces, [[0, 1, 8], [9, 2, 3]]])
    (tmp_path / "somenan.obj").write_text(_obj(vertices, faces))
    mesh = load_mesh(tmp_path / "somenan.obj")
    assert len(mesh.faces) == len(box.faces) and np.isfinite(mesh.vertices).all()


def test_preprocess_batch_skips_and_reports_bad_meshes(tmp_path):
    src, out = tmp_path / "in" / "things", tmp_path / "out"
    src.mkdir(parents=True)
    trimesh.creation.box().export(src / "good.obj")
    for name, (data, _) in BAD.items():
        (src / name).write_bytes(data)
    res = run_cli("preprocess", tmp_path / "in", out, *FAST)
    assert res.code == 1, res.err  # the batch finished, and items failed: exit 1 (onet.utils.batch)
    assert "Traceback" not in res.out + res.err and not res.errors()
    assert f"preprocessed 1 objects, skipped 0 already complete, {len(BAD)} failed" in res.out
    failed = [line for line in res.out.splitlines() if line.strip().startswith("failed ")]
    assert len(failed) == len(BAD)  # one line per bad file, naming it and its problem
    for name, (_, problem) in BAD.items():
        assert sum(name in line and problem in line for line in failed) == 1, (name, failed)
    records = read_report(out / "preprocess_report.jsonl")
    assert sorted(r["path"] for r in records if r["status"] == "failed") == sorted(str(src / n) for n in BAD)
    listed = [m for split in ("train", "val", "test") for m in read_split(out / "things" / f"{split}.lst")]
    assert listed == ["good"]  # only the finished object is listed for training
    assert not list(out.rglob(".*tmp*"))


def test_preprocess_with_nothing_usable_exits_1(tmp_path):
    src = tmp_path / "in" / "things"
    src.mkdir(parents=True)
    (src / "empty.obj").write_bytes(b"")
    res = run_cli("preprocess", tmp_path / "in", tmp_path / "out", *FAST)
    assert res.code == 1 and "empty.obj" in res.out and "file is empty" in res.out


def test_preprocess_of_a_folder_without_meshes_is_one_error(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("no meshes here")
    res = run_cli("preprocess", tmp_path / "in", tmp_path / "out", *FAST)
    assert res.code == 1 and len(res.errors()) == 1 and "no mesh files found" in res.errors()[0]


def test_large_mesh_loads_in_bounded_memory(tmp_path):
    """~330k faces (16 MB binary STL): loaded and cleaned with memory a small multiple of the file size."""
    sphere = trimesh.creation.icosphere(subdivisions=7)
    path = tmp_path / "large.stl"
    path.write_bytes(_binary_stl(sphere.vertices[sphere.faces].astype(np.float32)))
    tracemalloc.start()
    try:
        mesh = load_mesh(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(mesh.faces) == len(sphere.faces)
    assert peak < 20 * path.stat().st_size, f"peak {peak / 1e6:.0f} MB for a {path.stat().st_size / 1e6:.0f} MB file"


@pytest.mark.skipif(not os.environ.get("ONET_SLOW_TESTS"), reason="minutes of CPU; set ONET_SLOW_TESTS=1")
def test_million_face_mesh_is_preprocessed(tmp_path):
    sphere = trimesh.creation.icosphere(subdivisions=8)  # 1.3M faces
    src = tmp_path / "in" / "things"
    src.mkdir(parents=True)
    (src / "huge.stl").write_bytes(_binary_stl(sphere.vertices[sphere.faces].astype(np.float32)))
    res = run_cli("preprocess", tmp_path / "in", tmp_path / "out", *FAST)
    assert res.code == 0 and "preprocessed 1 objects" in res.out, res.out + res.err

import numpy as np
import pytest
import trimesh

from onet.geometry.mesh_files import export_mesh, read_mesh
from onet.geometry.marching_cubes import marching_cubes
from onet.generation.mise import mise

from fields import LEVEL, batched_eval_fn, sphere_sdf


@pytest.fixture(scope="module")
def sphere():
    values = mise(batched_eval_fn([sphere_sdf(radius=0.3)]), 1, resolution_0=12, upsampling_steps=0)[0].values
    vertices, faces = marching_cubes(values, LEVEL)
    normals = vertices / np.linalg.norm(vertices, axis=1, keepdims=True)
    return vertices, faces, normals


@pytest.mark.parametrize("suffix", ["ply", "obj", "off"])
@pytest.mark.parametrize("with_normals", [False, True])
def test_round_trip(tmp_path, sphere, suffix, with_normals):
    vertices, faces, normals = sphere
    path = tmp_path / f"mesh.{suffix}"
    export_mesh(path, vertices, faces, vertex_normals=normals if with_normals else None)
    v, f = read_mesh(path)
    assert v.dtype == np.float32 and f.dtype == np.int64
    assert np.array_equal(v, vertices) and np.array_equal(f, faces)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind
    # other tools read it too
    mesh = trimesh.load(path, process=False)
    assert len(mesh.faces) == len(faces) and mesh.is_watertight


def test_fmt_overrides_the_suffix(tmp_path, sphere):
    vertices, faces, _ = sphere
    export_mesh(tmp_path / "mesh.bin", vertices, faces, fmt="ply")
    v, f = read_mesh(tmp_path / "mesh.bin", fmt="ply")
    assert np.array_equal(f, faces)


def test_empty_mesh_round_trips(tmp_path):
    for suffix in ("ply", "obj", "off"):
        export_mesh(tmp_path / f"e.{suffix}", np.zeros((0, 3)), np.zeros((0, 3), int))
        v, f = read_mesh(tmp_path / f"e.{suffix}")
        assert v.shape == (0, 3) and f.shape == (0, 3)


def test_reads_ascii_ply_and_polygons(tmp_path):
    (tmp_path / "quad.ply").write_text(
        "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\n"
        "element face 1\nproperty list uchar int vertex_indices\nend_header\n"
        "0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n"
    )
    (tmp_path / "quad.obj").write_text("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nvt 0 0\nf 1/1 2/1 3/1 -1/1\n")
    (tmp_path / "quad.off").write_text("OFF\n# a comment\n4 1 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n")
    for suffix in ("ply", "obj", "off"):
        v, f = read_mesh(tmp_path / f"quad.{suffix}")
        assert v.shape == (4, 3) and f.tolist() == [[0, 1, 2], [0, 2, 3]]


def test_errors_name_the_file(tmp_path, sphere):
    vertices, faces, _ = sphere
    with pytest.raises(ValueError, match="unknown mesh format"):
        export_mesh(tmp_path / "mesh.stl", vertices, faces)
    (tmp_path / "bad.off").write_text("not a mesh")
    with pytest.raises(ValueError, match="bad.off"):
        read_mesh(tmp_path / "bad.off")
    with pytest.raises(ValueError, match="vertex_normals"):
        export_mesh(tmp_path / "mesh.ply", vertices, faces, vertex_normals=np.zeros((1, 3)))


def test_failed_write_keeps_the_old_file(tmp_path, sphere, monkeypatch):
    vertices, faces, _ = sphere
    path = tmp_path / "mesh.ply"
    export_mesh(path, vertices, faces)
    before = path.read_bytes()

    import onet.geometry.mesh_files as export

    def explode(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export, "_ply_bytes", explode)
    with pytest.raises(RuntimeError):
        export_mesh(path, vertices[:10], faces[:1])
    assert path.read_bytes() == before

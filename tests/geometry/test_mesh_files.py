import json
import struct

import numpy as np
import pytest
import trimesh

from onet.geometry.mesh_files import READ_SUFFIXES, export_mesh, read_mesh
from onet.geometry.marching_cubes import marching_cubes
from onet.generation.mise import mise

from fields import LEVEL, batched_eval_fn, sphere_sdf


@pytest.fixture(scope="module")
def sphere():
    values = mise(batched_eval_fn([sphere_sdf(radius=0.3)]), 1, resolution_0=12, upsampling_steps=0)[0].values
    vertices, faces = marching_cubes(values, LEVEL)
    normals = vertices / np.linalg.norm(vertices, axis=1, keepdims=True)
    return vertices, faces, normals


@pytest.mark.parametrize("suffix", ["ply", "obj", "off", "glb"])
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
    mesh = trimesh.load(path, process=False, force="mesh")  # a GLB loads as a scene
    assert len(mesh.faces) == len(faces) and mesh.is_watertight


def test_fmt_overrides_the_suffix(tmp_path, sphere):
    vertices, faces, _ = sphere
    export_mesh(tmp_path / "mesh.bin", vertices, faces, fmt="ply")
    v, f = read_mesh(tmp_path / "mesh.bin", fmt="ply")
    assert np.array_equal(f, faces)


def test_empty_mesh_round_trips(tmp_path):
    for suffix in ("ply", "obj", "off", "glb", "stl"):
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
        export_mesh(tmp_path / "mesh.xyz", vertices, faces)
    (tmp_path / "bad.off").write_text("not a mesh")
    with pytest.raises(ValueError, match="bad.off"):
        read_mesh(tmp_path / "bad.off")
    with pytest.raises(ValueError, match="vertex_normals"):
        export_mesh(tmp_path / "mesh.ply", vertices, faces, vertex_normals=np.zeros((1, 3)))


@pytest.mark.parametrize("suffix", [".ply", ".obj", ".off", ".glb", ".stl", ".dae", ".gltf"])
def test_empty_and_missing_files_get_one_message_in_every_format(tmp_path, suffix):
    (tmp_path / f"empty{suffix}").write_bytes(b"")
    with pytest.raises(ValueError, match=rf"empty\{suffix}: file is empty \(0 bytes\)"):
        read_mesh(tmp_path / f"empty{suffix}")
    with pytest.raises(ValueError, match=rf"gone\{suffix}: no such file"):
        read_mesh(tmp_path / f"gone{suffix}")


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


def test_stl_round_trip_keeps_every_triangle_and_shares_vertices(tmp_path, sphere):
    vertices, faces, normals = sphere
    path = tmp_path / "mesh.stl"
    export_mesh(path, vertices, faces, vertex_normals=normals)  # STL has no vertex normals: dropped
    assert path.stat().st_size == 84 + 50 * len(faces)
    v, f = read_mesh(path)
    assert np.array_equal(v[f], vertices.astype(np.float32)[faces])  # the same triangles, corner by corner
    assert len(v) == len(vertices)  # corners merged back into shared vertices
    mesh = trimesh.load(path)
    assert len(mesh.faces) == len(faces) and mesh.is_watertight
    # the stored face normals point outwards (the sphere is centred at the origin)
    assert (np.einsum("ij,ij->i", mesh.face_normals, mesh.triangles_center) > 0).all()


def test_glb_is_valid_gltf_for_other_tools(tmp_path, sphere):
    vertices, faces, normals = sphere
    path = tmp_path / "mesh.glb"
    export_mesh(path, vertices, faces, vertex_normals=2 * normals)
    scene = trimesh.load(path, process=False)
    (mesh,) = scene.geometry.values()
    assert np.array_equal(np.asarray(mesh.vertices, np.float32), vertices.astype(np.float32))
    assert np.array_equal(mesh.faces, faces)
    assert np.allclose(np.linalg.norm(mesh.vertex_normals, axis=1), 1, atol=1e-6)  # stored as unit normals
    assert path.stat().st_size % 4 == 0


def test_reads_glb_and_stl_written_by_other_tools(tmp_path, sphere):
    vertices, faces, _ = sphere
    box = trimesh.creation.box(extents=(1, 2, 3))
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.Trimesh(vertices, faces, process=False), node_name="sphere",
                       transform=trimesh.transformations.translation_matrix([2.0, 0, 0]))
    scene.add_geometry(box, node_name="box",
                       transform=trimesh.transformations.rotation_matrix(np.pi / 2, [0, 0, 1]))
    scene.export(tmp_path / "scene.glb")
    v, f = read_mesh(tmp_path / "scene.glb")
    assert len(f) == len(faces) + len(box.faces)
    assert np.allclose(trimesh.Trimesh(v, f).bounds, scene.bounds, atol=1e-6)  # node transforms applied

    box.export(tmp_path / "box_ascii.stl", file_type="stl_ascii")
    v, f = read_mesh(tmp_path / "box_ascii.stl")
    assert len(v) == 8 and len(f) == 12 and np.allclose(np.abs(v), [0.5, 1, 1.5])


@pytest.mark.parametrize("name, data, message", [
    ("bad.glb", b"glTF\x02\x00\x00\x00", "bad.glb"),
    ("draco.glb", None, "KHR_draco_mesh_compression"),
    ("bad.stl", b"this is not a mesh", "not an STL file"),
])
def test_bad_glb_and_stl_name_the_file_and_problem(tmp_path, name, data, message):
    if data is None:
        doc = json.dumps({"asset": {"version": "2.0"}, "extensionsRequired": ["KHR_draco_mesh_compression"]}).encode()
        doc += b" " * (-len(doc) % 4)
        data = struct.pack("<III", 0x46546C67, 2, 20 + len(doc)) + struct.pack("<II", len(doc), 0x4E4F534A) + doc
    (tmp_path / name).write_bytes(data)
    with pytest.raises(ValueError, match=message) as info:
        read_mesh(tmp_path / name)
    assert name in str(info.value)


def test_reads_gltf_with_separate_buffers_and_collada(tmp_path, sphere):
    # glTF's JSON + .bin pair (other tools write it; onet writes GLB): read, node transform applied
    vertices, faces, _ = sphere
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.Trimesh(vertices, faces, process=False), node_name="sphere",
                       transform=trimesh.transformations.translation_matrix([0, 1.0, 0]))
    for name, data in scene.export(file_type="gltf").items():
        (tmp_path / name).write_bytes(data)
    v, f = read_mesh(tmp_path / "model.gltf")
    assert len(f) == len(faces) and np.allclose(v, vertices + [0, 1.0, 0], atol=1e-6)
    assert ".gltf" in READ_SUFFIXES and ".glb" in READ_SUFFIXES
    (tmp_path / "gltfBuffer.bin").unlink(missing_ok=True)
    for extra in tmp_path.glob("*.bin"):
        extra.unlink()
    with pytest.raises(ValueError, match="model.gltf"):  # its buffer missing: named
        read_mesh(tmp_path / "model.gltf")
    with pytest.raises(ValueError, match="unknown mesh format 'usdz'"):
        read_mesh(tmp_path / "model.usdz")
    trimesh.Trimesh(vertices, faces, process=False).export(tmp_path / "sphere.dae")  # COLLADA too
    v, f = read_mesh(tmp_path / "sphere.dae")
    assert len(f) == len(faces) and np.allclose(v, vertices, atol=1e-6)
    assert ".dae" in READ_SUFFIXES

import numpy as np
import pytest
import trimesh

from onet.geometry.mesh_io import MeshLoadError, clean_triangles, load_mesh


@pytest.mark.parametrize("ext", ["obj", "off", "ply", "stl", "glb"])
def test_load_formats(tmp_path, ext):
    box = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    path = tmp_path / f"box.{ext}"
    box.export(path)
    mesh = load_mesh(path)
    assert len(mesh.faces) == 12
    np.testing.assert_allclose(mesh.bounds, box.bounds, atol=1e-6)
    assert abs(mesh.area - box.area) < 1e-5


def test_scene_is_merged_with_transforms(tmp_path):
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.creation.box(), transform=trimesh.transformations.translation_matrix([5, 0, 0]))
    scene.add_geometry(trimesh.creation.icosphere(subdivisions=1))
    path = tmp_path / "scene.glb"
    scene.export(path)
    mesh = load_mesh(path)
    assert len(mesh.faces) == 12 + 80
    assert mesh.bounds[1, 0] == pytest.approx(5.5, abs=1e-5)  # the box was moved
    assert mesh.bounds[0, 0] == pytest.approx(-1.0, abs=1e-5)


def test_nan_vertices_and_degenerate_faces_are_dropped(tmp_path):
    path = tmp_path / "m.obj"
    path.write_text(
        "v 0 0 0\nv 1 0 0\nv 0 1 0\nv nan 0 0\nv 0 0 1\nv 2 0 0\n"
        "f 1 2 3\nf 1 2 4\nf 1 3 5\nf 1 1 2\nf 1 2 6\n"  # NaN face, repeated index, zero-area (collinear)
    )
    mesh = load_mesh(path)
    assert np.isfinite(mesh.vertices).all()
    assert len(mesh.faces) == 2
    assert len(mesh.vertices) == 4


def test_clean_triangles_reference():
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [np.inf, 0, 0]], float)
    f = np.array([[0, 1, 2], [0, 1, 3], [0, 1, 9], [2, 2, 1]])
    cv, cf = clean_triangles(v, f)
    assert cf.tolist() == [[0, 1, 2]] and len(cv) == 3


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("garbage.obj", bytes(range(256)) * 4, "unreadable|no faces"),
        ("garbage.ply", b"\x00\xff" * 300, "unreadable"),
        ("garbage.stl", b"\x13\x37" * 10, "unreadable|no faces"),
        ("empty.off", b"", "empty"),
        ("points_only.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\n", "no faces"),
        ("all_nan.obj", b"v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "degenerate or use NaN"),
        ("flat.obj", b"v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n", "degenerate"),
    ],
)
def test_bad_files_raise_naming_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(MeshLoadError, match=message) as info:
        load_mesh(path)
    assert name in str(info.value)
    assert isinstance(info.value, ValueError)


def test_missing_and_unsupported(tmp_path):
    with pytest.raises(MeshLoadError, match="no such file"):
        load_mesh(tmp_path / "nope.obj")
    (tmp_path / "x.dae").write_text("<xml/>")
    with pytest.raises(MeshLoadError, match="unsupported"):
        load_mesh(tmp_path / "x.dae")

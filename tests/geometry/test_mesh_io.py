import warnings

import numpy as np
import pytest
import trimesh

from onet.geometry.appearance import DEFAULT_COLOR
from onet.geometry.mesh_io import MeshLoadError, clean_triangles, load_mesh, load_mesh_with_appearance
from textured import (BLUE, GREEN, RED, YELLOW, colors_at_points, cube_color, write_textured_cube_obj,
                      write_textured_quad_gltf)


@pytest.mark.parametrize("ext", ["obj", "off", "ply", "stl", "glb", "dae"])
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


def test_inf_vertices_under_a_node_transform_are_reported_not_warned(tmp_path):
    # a glTF node transform applied to inf coordinates made numpy print a RuntimeWarning of
    # trimesh's; the load itself reports the dropped faces (the message below, or its metadata)
    box = trimesh.creation.box()
    box.vertices[0] = np.inf
    scene = trimesh.Scene()
    scene.add_geometry(box, transform=trimesh.transformations.rotation_matrix(0.3, [1, 1, 0]))
    scene.add_geometry(trimesh.creation.icosphere(subdivisions=1))
    path = tmp_path / "inf.glb"
    scene.export(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        mesh = load_mesh(path)
    assert np.isfinite(mesh.vertices).all()
    assert "NaN/inf" in mesh.metadata["onet_dropped"]


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
    (tmp_path / "x.usdz").write_text("PK")
    with pytest.raises(MeshLoadError, match="unsupported"):
        load_mesh(tmp_path / "x.usdz")
    (tmp_path / "x.dae").write_text("<COLLADA/>")  # a supported format without geometry: named
    with pytest.raises(MeshLoadError, match="x.dae"):
        load_mesh(tmp_path / "x.dae")


# --------------------------------------------------------------------------- materials


def _cube_surface_points() -> np.ndarray:
    """Quadrant centres on every face of the unit cube."""
    from textured import CUBE_FACES
    pts = []
    for n, u, v in CUBE_FACES:
        for su in (-0.25, 0.25):
            for sv in (-0.25, 0.25):
                pts.append(0.5 * np.array(n) + su * np.array(u) + sv * np.array(v))
    return np.array(pts)


@pytest.mark.parametrize("texture_ref", ["../images/texture0.png", "..\\images\\texture0.png"])
def test_obj_texture_through_uvs(tmp_path, texture_ref):
    # ShapeNet v2 keeps textures in ../images; Windows exporters write backslashes
    path = write_textured_cube_obj(tmp_path / "obj", texture_ref=texture_ref)
    mesh, app = load_mesh_with_appearance(path)
    assert len(mesh.faces) == 12 and app is not None and len(app.textures) == 1
    pts = _cube_surface_points()
    got = colors_at_points(mesh, app, pts)
    expected = np.array([cube_color(p) for p in pts])
    # the texture replaces Kd (0.2 grey here), texel colours come back exactly
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert {tuple(c) for c in expected} == {RED, GREEN, BLUE, YELLOW}
    # the geometry is what load_mesh gives
    plain = load_mesh(path)
    np.testing.assert_array_equal(plain.vertices, mesh.vertices)
    np.testing.assert_array_equal(plain.faces, mesh.faces)


def test_gltf_texture_coordinates_are_flipped_to_the_obj_convention(tmp_path):
    path = write_textured_quad_gltf(tmp_path / "quad.gltf")
    mesh, app = load_mesh_with_appearance(path)
    pts = np.array([[-0.25, 0.25, 0], [0.25, 0.25, 0], [-0.25, -0.25, 0], [0.25, -0.25, 0]])
    # top-left of the image shows at the top-left of the square (+y up, +x right)
    np.testing.assert_allclose(colors_at_points(mesh, app, pts), [RED, GREEN, BLUE, YELLOW], atol=1e-6)


def test_missing_or_corrupt_texture_falls_back_to_the_material_colour(tmp_path):
    path = write_textured_cube_obj(tmp_path / "missing", texture_ref="nowhere.png", kd="0.1 0.4 0.7")
    mesh, app = load_mesh_with_appearance(path)
    assert app is not None and not app.textures
    np.testing.assert_allclose(app.face_colors, np.tile([0.1, 0.4, 0.7], (12, 1)), atol=1 / 255)
    path = write_textured_cube_obj(tmp_path / "corrupt", kd="0.1 0.4 0.7")
    (tmp_path / "corrupt" / "images" / "texture0.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    mesh, app = load_mesh_with_appearance(path)
    assert len(mesh.faces) == 12 and not app.textures
    np.testing.assert_allclose(app.face_colors, np.tile([0.1, 0.4, 0.7], (12, 1)), atol=1 / 255)


def test_vertex_and_face_colours_from_ply(tmp_path):
    header = "ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\n"
    vertex = ["0 0 0", "1 0 0", "0 1 0", "0 0 1"]
    faces = ["3 0 2 1", "3 0 1 3", "3 0 3 2", "3 1 2 3"]
    (tmp_path / "v.ply").write_text(
        header + "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        "element face 4\nproperty list uchar int vertex_indices\nend_header\n"
        + "\n".join(f"{v} {c}" for v, c in zip(vertex, ["255 0 0", "0 255 0", "0 0 255", "255 255 255"]))
        + "\n" + "\n".join(faces) + "\n")
    mesh, app = load_mesh_with_appearance(tmp_path / "v.ply")
    assert app.vertex_colors is not None and app.uv is None
    by_position = {tuple(p): tuple(c) for p, c in zip(mesh.vertices, app.vertex_colors)}
    assert by_position[(1.0, 0.0, 0.0)] == (0.0, 1.0, 0.0) and by_position[(0.0, 0.0, 1.0)] == (1.0, 1.0, 1.0)

    (tmp_path / "f.ply").write_text(
        header + "element face 4\nproperty list uchar int vertex_indices\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
        + "\n".join(vertex) + "\n"
        + "\n".join(f"{f} {c}" for f, c in zip(faces, ["255 0 0", "0 255 0", "0 0 255", "51 102 153"])) + "\n")
    mesh, app = load_mesh_with_appearance(tmp_path / "f.ply")
    assert app.vertex_colors is None
    np.testing.assert_allclose(app.face_colors, [[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.2, 0.4, 0.6]], atol=1e-6)


def test_colours_follow_the_cleaning(tmp_path):
    # OBJ vertex colours; a NaN vertex, a repeated-index face and a zero-area face are dropped
    path = tmp_path / "m.obj"
    path.write_text(
        "v 0 0 0 1 0 0\nv 1 0 0 0 1 0\nv nan 0 0 0 0 0\nv 0 1 0 0 0 1\nv 2 0 0 1 1 1\nv 0 0 1 1 1 0\n"
        "f 1 2 3\nf 1 2 4\nf 1 1 2\nf 1 2 5\nf 1 4 6\n")
    mesh, app = load_mesh_with_appearance(path)
    assert len(mesh.faces) == 2 and len(mesh.vertices) == 4
    app.check_mesh(len(mesh.vertices), len(mesh.faces))
    expected = {(0, 0, 0): (1, 0, 0), (1, 0, 0): (0, 1, 0), (0, 1, 0): (0, 0, 1), (0, 0, 1): (1, 1, 0)}
    for p, c in zip(mesh.vertices, app.vertex_colors):
        assert tuple(c) == expected[tuple(p)]


def test_multi_part_scene_keeps_each_parts_colour_and_plain_meshes_have_none(tmp_path):
    scene = trimesh.Scene()
    red = trimesh.creation.box()
    red.visual.face_colors = [255, 0, 0, 255]
    plain = trimesh.creation.icosphere(subdivisions=1)
    scene.add_geometry(red, transform=trimesh.transformations.translation_matrix([3, 0, 0]))
    scene.add_geometry(plain)
    scene.export(tmp_path / "s.glb")
    mesh, app = load_mesh_with_appearance(tmp_path / "s.glb")
    assert len(mesh.faces) == 92
    on_box = mesh.triangles_center[:, 0] > 2
    assert on_box.sum() == 12
    np.testing.assert_allclose(app.colors_at(mesh.faces, np.flatnonzero(on_box), np.full((12, 3), 1 / 3)),
                               np.tile([1, 0, 0], (12, 1)), atol=1e-6)
    # the part without any colour gets the default grey
    np.testing.assert_allclose(app.face_colors[~on_box], np.tile(DEFAULT_COLOR, (80, 1)), atol=1e-6)

    trimesh.creation.box().export(tmp_path / "plain.obj")
    assert load_mesh_with_appearance(tmp_path / "plain.obj")[1] is None


def test_gltf_without_its_buffer_file_says_which_file_is_missing(tmp_path):
    import trimesh

    files = trimesh.creation.box().export(file_type="gltf")  # {"model.gltf": ..., "<buffer>.bin": ...}
    gltf = next(name for name in files if name.endswith(".gltf"))
    buffers = sorted(name for name in files if name.endswith(".bin"))
    (tmp_path / "box.gltf").write_bytes(files[gltf])  # copied without its .bin files
    with pytest.raises(MeshLoadError, match=r"box.gltf: .*a file it refers to is missing: gltf_buffer_\d+\.bin"):
        load_mesh(tmp_path / "box.gltf")
    for name in buffers:
        (tmp_path / name).write_bytes(files[name])
    assert len(load_mesh(tmp_path / "box.gltf").faces) == 12


def test_draco_compressed_gltf_is_decoded(tmp_path):
    # KHR_draco_mesh_compression (web exports): without DracoPy trimesh reads every vertex as 0
    import base64
    import json

    import DracoPy

    sphere = trimesh.creation.icosphere(subdivisions=2)
    blob = DracoPy.encode(np.asarray(sphere.vertices, np.float32), np.asarray(sphere.faces, np.uint32))
    doc = {
        "asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
        "extensionsUsed": ["KHR_draco_mesh_compression"], "extensionsRequired": ["KHR_draco_mesh_compression"],
        "buffers": [{"byteLength": len(blob),
                     "uri": "data:application/octet-stream;base64," + base64.b64encode(blob).decode()}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": len(blob)}],
        "accessors": [{"componentType": 5126, "count": len(sphere.vertices), "type": "VEC3",
                       "min": sphere.bounds[0].tolist(), "max": sphere.bounds[1].tolist()},
                      {"componentType": 5125, "count": sphere.faces.size, "type": "SCALAR"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1, "mode": 4, "extensions": {
            "KHR_draco_mesh_compression": {"bufferView": 0, "attributes": {"POSITION": 0}}}}]}],
    }
    (tmp_path / "sphere.gltf").write_text(json.dumps(doc))
    mesh = load_mesh(tmp_path / "sphere.gltf")
    assert len(mesh.faces) == len(sphere.faces)
    assert mesh.area == pytest.approx(sphere.area, rel=1e-3)  # Draco quantises positions (14 bits)

"""Reading users' own input files (onet/generation/inputs.py)."""

from __future__ import annotations

import numpy as np
import pytest

from onet.data.formats import DataFormatError
from onet.generation.inputs import find_input_files, pool_voxels, read_point_cloud
from onet.utils.errors import UsageError


@pytest.mark.parametrize("sep, header", [(" ", ""), (",", ""), (";", ""), ("\t", ""), (",", "x,y,z\n"),
                                         (", ", "X, Y, Z, intensity\n"), (";", "x;y;z\n")])
def test_text_point_clouds_with_any_common_separator_and_a_header(tmp_path, sep, header):
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(20, 4))
    ncols = 4 if "intensity" in header else 3
    text = header + "\n".join(sep.join(f"{v:.17g}" for v in row[:ncols]) for row in pts) + "\n"
    path = tmp_path / "scan.txt"
    path.write_text(text)
    np.testing.assert_allclose(read_point_cloud(path), pts[:, :3])


def test_text_that_is_not_numbers_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.xyz"
    path.write_text("a list of chairs\nsecond line of prose\n")
    with pytest.raises(DataFormatError, match="notes.xyz: cannot read point cloud"):
        read_point_cloud(path)


def test_find_input_files_counts_what_it_leaves_out(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.JPG").write_bytes(b"")
    (tmp_path / "c.ply").write_bytes(b"")
    (tmp_path / "README").write_text("")
    (tmp_path / ".hidden.png").write_bytes(b"")
    files, other = find_input_files(tmp_path, "img")
    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["a.png", "sub/b.JPG"]
    assert other == {".ply": 1, "(no suffix)": 1}


def test_a_ply_mesh_gives_points_spread_over_its_surface(tmp_path):
    import trimesh

    box = trimesh.creation.box((1.0, 0.5, 0.25))  # 8 vertices, all corners
    box.export(tmp_path / "box.ply")
    points = read_point_cloud(tmp_path / "box.ply")
    assert points.shape == (10_000, 3)
    # on the surface, and not only at the corners: points on every face's interior
    assert np.abs(box.nearest.signed_distance(points[:500])).max() < 1e-6
    assert (np.abs(points[:, 0]) < 0.4).mean() > 0.5
    # a point cloud saved as .ply (vertices only) is read as it is
    trimesh.PointCloud(box.vertices).export(tmp_path / "cloud.ply")
    np.testing.assert_allclose(read_point_cloud(tmp_path / "cloud.ply"), box.vertices)



@pytest.mark.parametrize("suffix", [".obj", ".stl", ".glb", ".off"])
def test_meshes_of_any_format_give_points_on_their_surface(tmp_path, suffix):
    import trimesh

    # two parts (a scene in .glb / .obj): points on both, spread by area
    parts = [trimesh.creation.box((1.0, 0.5, 0.25)), trimesh.creation.box((0.2, 0.2, 0.2)).apply_translation([2, 0, 0])]
    both = trimesh.util.concatenate(parts)
    (both if suffix == ".off" else trimesh.Scene(parts)).export(tmp_path / f"pair{suffix}")
    files, other = find_input_files(tmp_path, "pointcloud")
    assert [p.name for p in files] == [f"pair{suffix}"] and not other
    points = read_point_cloud(tmp_path / f"pair{suffix}")
    assert points.shape == (10_000, 3)
    assert np.abs(both.nearest.signed_distance(points[:300])).max() < 1e-5
    assert 0.02 < (points[:, 0] > 1.5).mean() < 0.15  # the small box: 0.24 of 1.99 area units
    # an OBJ of vertices only (a scan) is read as it is
    (tmp_path / "scan.obj").write_text("".join(f"v {x} {y} {z}\n" for x, y, z in parts[0].vertices))
    np.testing.assert_allclose(read_point_cloud(tmp_path / "scan.obj"), parts[0].vertices)


def test_an_unreadable_mesh_input_names_the_file_once(tmp_path):
    (tmp_path / "bad.stl").write_bytes(b"solid x\nfacet broken\n")
    with pytest.raises(DataFormatError) as info:
        read_point_cloud(tmp_path / "bad.stl")
    assert str(info.value).count("bad.stl") == 1 and "cannot read point cloud" in str(info.value)


def test_a_reader_error_without_words_gets_its_type(tmp_path):
    # a PLY header without a y property: the reader raises KeyError('y'), which alone would print as 'y'
    path = tmp_path / "scan.ply"
    path.write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nend_header\n1\n2\n3\n")
    with pytest.raises(DataFormatError, match=r"scan.ply: cannot read point cloud \(KeyError: 'y'\)"):
        read_point_cloud(path)


def test_a_file_given_as_the_input_folder_is_a_usage_error(tmp_path):
    (tmp_path / "chair.png").write_bytes(b"")
    with pytest.raises(UsageError, match="--input takes a folder, and .*chair.png is a file"):
        find_input_files(tmp_path / "chair.png", "img")
    with pytest.raises(FileNotFoundError, match="input folder not found"):
        find_input_files(tmp_path / "nowhere", "img")


def test_semicolon_text_with_decimal_commas(tmp_path):
    path = tmp_path / "scan.txt"
    path.write_text("x;y;z\n0,5;1,25;-2\n1;0,125;3,5\n2,75;1;0\n")
    np.testing.assert_allclose(read_point_cloud(path), [[0.5, 1.25, -2], [1, 0.125, 3.5], [2.75, 1, 0]])


def test_finer_voxel_grids_are_max_pooled_to_the_model_grid(tmp_path):
    rng = np.random.default_rng(0)
    coarse = rng.random((4, 4, 4)) < 0.3
    fine = np.zeros((8, 8, 8), bool)
    for i, j, k in zip(*np.nonzero(coarse)):  # one sub-cell of each occupied cell
        fine[2 * i + rng.integers(2), 2 * j + rng.integers(2), 2 * k + rng.integers(2)] = True
    np.testing.assert_array_equal(pool_voxels(tmp_path / "v.npy", fine, 4), coarse)
    np.testing.assert_array_equal(pool_voxels(tmp_path / "v.npy", coarse, 4), coarse)
    for shape in ((6, 6, 6), (2, 2, 2), (8, 8, 4)):
        with pytest.raises(DataFormatError, match=r"v.npy: voxel grid must be 4\^3 \(or a multiple"):
            pool_voxels(tmp_path / "v.npy", np.zeros(shape, bool), 4)

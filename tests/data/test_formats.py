import numpy as np
import pytest
import yaml

from onet.data.formats import (
    DataFormatError,
    OccupancySamples,
    check_array,
    load_cameras_npz,
    load_pointcloud_npz,
    load_points_npz,
    read_binvox,
    read_metadata,
    read_split,
    write_binvox,
    write_cameras_npz,
    write_metadata,
    write_pointcloud_npz,
    write_points_npz,
    write_split,
)


def test_binvox_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    voxels = rng.random((32, 32, 32)) < 0.3
    voxels[:4] = True  # long runs: more than 255 equal values in a row
    path = tmp_path / "model.binvox"
    write_binvox(path, voxels)
    out = read_binvox(path)
    assert out.dtype == bool and out.shape == (32, 32, 32)
    np.testing.assert_array_equal(out, voxels)
    header = path.read_bytes().split(b"data\n")[0]
    assert b"dim 32 32 32" in header and b"translate -0.5 -0.5 -0.5" in header and b"scale 1" in header


def test_binvox_axis_convention_from_hand_made_bytes(tmp_path):
    # 2x2x2 grid; binvox stores index x * 4 + z * 2 + y (y fastest).
    # Runs: 0 x3, 1 x1, 0 x4 -> only flat index 3 = (x=0, z=1, y=1) is set.
    data = b"#binvox 1\ndim 2 2 2\ntranslate -0.5 -0.5 -0.5\nscale 1\ndata\n" + bytes([0, 3, 1, 1, 0, 4])
    path = tmp_path / "hand.binvox"
    path.write_bytes(data)
    voxels = read_binvox(path)
    expected = np.zeros((2, 2, 2), dtype=bool)
    expected[0, 1, 1] = True  # [x, y, z]
    np.testing.assert_array_equal(voxels, expected)
    # runs: flat index 2 = (x=0, z=1, y=0) -> voxel [x=0, y=0, z=1]
    path.write_bytes(data[:-6] + bytes([0, 2, 1, 1, 0, 5]))
    assert np.argwhere(read_binvox(path)).tolist() == [[0, 0, 1]]
    # and the writer produces exactly these bytes
    write_binvox(tmp_path / "w.binvox", read_binvox(path))
    assert (tmp_path / "w.binvox").read_bytes().endswith(b"data\n" + bytes([0, 2, 1, 1, 0, 5]))


def test_binvox_errors_name_file(tmp_path):
    bad = tmp_path / "short.binvox"
    bad.write_bytes(b"#binvox 1\ndim 2 2 2\ndata\n" + bytes([0, 3]))
    with pytest.raises(DataFormatError, match="short.binvox.*8"):
        read_binvox(bad)
    notbv = tmp_path / "x.binvox"
    notbv.write_bytes(b"hello")
    with pytest.raises(DataFormatError, match="x.binvox"):
        read_binvox(notbv)


def test_points_npz_stores_float16_and_packbits(tmp_path):
    rng = np.random.default_rng(1)
    n = 1001  # not a multiple of 8: the packed tail must be cut
    points = rng.uniform(-0.55, 0.55, (n, 3)).astype(np.float32)
    occ = rng.random(n) < 0.4
    path = tmp_path / "points.npz"
    write_points_npz(path, points, occ, loc=[0.1, 0.2, 0.3], scale=2.0)
    raw = np.load(path)  # plain numpy, per DESIGN §4
    assert raw["points"].dtype == np.float16 and raw["points"].shape == (n, 3)
    assert raw["occupancies"].dtype == np.uint8 and raw["occupancies"].shape == ((n + 7) // 8,)
    np.testing.assert_array_equal(np.unpackbits(raw["occupancies"])[:n].astype(bool), occ)
    out = load_points_npz(path)
    assert out["points"].dtype == np.float32 and out["occupancies"].dtype == bool
    np.testing.assert_array_equal(out["occupancies"], occ)
    np.testing.assert_allclose(out["points"], points, atol=1e-3)
    np.testing.assert_allclose(out["loc"], [0.1, 0.2, 0.3], rtol=1e-6)
    assert out["scale"] == pytest.approx(2.0)
    jittered = load_points_npz(path, jitter=1e-4, rng=np.random.default_rng(0))["points"]
    assert 0 < np.abs(jittered - out["points"]).max() < 1e-3


def test_points_npz_reads_unpacked_occupancies(tmp_path):
    path = tmp_path / "p.npz"
    np.savez(path, points=np.zeros((5, 3), np.float16), occupancies=np.array([1, 0, 1, 1, 0], np.float32))
    out = load_points_npz(path)
    assert out["occupancies"].tolist() == [True, False, True, True, False]
    assert out["scale"] == 1.0 and out["loc"].tolist() == [0, 0, 0]
    np.savez(path, points=np.zeros((5, 3)), occupancies=np.zeros(3, np.uint8))
    with pytest.raises(DataFormatError, match="p.npz"):
        load_points_npz(path)


@pytest.mark.parametrize("packed, dtype", [(True, np.float16), (False, np.float32)])
def test_occupancy_samples_take_the_rows_load_points_npz_reads(tmp_path, packed, dtype):
    # the training loader converts only its drawn rows: they must be the whole file's rows, bit for bit
    rng = np.random.default_rng(3)
    n = 1003
    points = rng.uniform(-0.55, 0.55, (n, 3)).astype(dtype)
    occ = rng.random(n) < 0.3
    path = tmp_path / "points.npz"
    np.savez(path, points=points, occupancies=np.packbits(occ) if packed else occ.astype(np.uint8))
    full = load_points_npz(path)
    samples = OccupancySamples(path)
    assert len(samples) == n and samples.packed == packed and samples.points.dtype == dtype  # kept as stored
    sel = np.concatenate([[0, 7, 8, n - 1, n - 1], rng.integers(0, n, 500)])
    taken, taken_occ = samples.take(sel)
    assert taken.dtype == np.float32 and taken_occ.dtype == bool
    np.testing.assert_array_equal(taken, full["points"][sel])
    np.testing.assert_array_equal(taken_occ, occ[sel])
    every, every_occ = samples.take()
    np.testing.assert_array_equal(every, full["points"])
    np.testing.assert_array_equal(every_occ, occ)


def test_float16_files_are_checked_for_nan_and_inf_on_their_bits():
    values = np.array([[0.5, -0.0, 6e-8], [65504, np.nan, 1], [np.inf, -np.inf, -65504]], np.float16)
    with pytest.raises(DataFormatError, match="points holds 3 NaN/inf values"):
        check_array("p.npz", "points", values)
    with pytest.raises(DataFormatError, match="points holds 1 NaN/inf value "):
        check_array("p.npz", "points", values[:, 0])  # a strided view
    check_array("p.npz", "points", values[0])  # the largest, smallest and signed-zero values are finite


def test_pointcloud_npz_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    points = rng.normal(size=(100, 3)).astype(np.float32) * 0.3
    normals = rng.normal(size=(100, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    path = tmp_path / "pointcloud.npz"
    write_pointcloud_npz(path, points, normals, loc=np.zeros(3), scale=1.0)
    raw = np.load(path)
    assert raw["points"].dtype == np.float16 and raw["normals"].dtype == np.float16
    out = load_pointcloud_npz(path)
    assert out["points"].dtype == np.float32 and out["normals"].shape == (100, 3)
    np.testing.assert_allclose(out["normals"], normals, atol=1e-3)
    stored = load_pointcloud_npz(path, as_stored=True, normals=False)  # the loader's read: the rows it draws convert
    assert stored["points"].dtype == np.float16 and stored["normals"] is None
    np.testing.assert_array_equal(stored["points"].astype(np.float32), out["points"])
    np.testing.assert_allclose(stored["loc"], [0, 0, 0])
    np.savez(path, points=raw["points"])  # without normals: the points alone still load, the whole file does not
    assert load_pointcloud_npz(path, normals=False)["points"].shape == (100, 3)
    with pytest.raises(DataFormatError, match=r"missing arrays \['normals'\] \(has \['points'\]\)"):
        load_pointcloud_npz(path)


def test_cameras_round_trip_and_published_inverse_keys(tmp_path):
    cams = [(np.eye(3) * (i + 1), np.hstack([np.eye(3), [[i], [0], [1]]])) for i in range(3)]
    path = tmp_path / "cameras.npz"
    write_cameras_npz(path, cams)
    out = load_cameras_npz(path)
    assert len(out) == 3
    for (K, RT), (K2, RT2) in zip(cams, out):
        assert K2.shape == (3, 3) and RT2.shape == (3, 4)
        np.testing.assert_allclose(K2, K)
        np.testing.assert_allclose(RT2, RT)
    # published files also carry inverse matrices; they are ignored
    extra = {f"camera_mat_inv_{i}": np.eye(3) for i in range(3)} | {f"world_mat_inv_{i}": np.eye(4) for i in range(3)}
    np.savez(path, **dict(np.load(path)), **extra)
    assert len(load_cameras_npz(path)) == 3
    np.savez(path, camera_mat_0=np.eye(3))
    with pytest.raises(DataFormatError, match="world_mat_0"):
        load_cameras_npz(path)


def test_split_and_metadata(tmp_path):
    path = tmp_path / "train.lst"
    path.write_text("a1\nb2\n\nc3\n")
    assert read_split(path) == ["a1", "b2", "c3"]
    write_split(path, ["x", "y"])
    assert path.read_text() == "x\ny\n"
    assert read_split(path) == ["x", "y"]
    write_split(path, [])
    assert read_split(path) == []

    meta = tmp_path / "metadata.yaml"
    write_metadata(meta, {"04256520": {"id": "04256520", "name": "sofa,couch,lounge"}})
    assert read_metadata(meta) == {"04256520": {"id": "04256520", "name": "sofa,couch,lounge"}}
    # the published file writes synset ids unquoted; they must stay strings
    meta.write_text("04256520:\n  id: 04256520\n  name: sofa,couch,lounge\n")
    assert yaml.safe_load(meta.read_text()) != {"04256520": {"id": "04256520", "name": "sofa,couch,lounge"}}
    assert read_metadata(meta) == {"04256520": {"id": "04256520", "name": "sofa,couch,lounge"}}


def test_depth_npz_round_trip_and_errors(tmp_path):
    from onet.data.formats import load_depth_npz, write_depth_npz

    depth = [np.zeros((4, 5), np.float32), np.linspace(0, 3, 20, dtype=np.float32).reshape(4, 5)]
    write_depth_npz(tmp_path / "depth.npz", depth)
    back = load_depth_npz(tmp_path / "depth.npz")
    assert len(back) == 2 and all(np.array_equal(a, b) for a, b in zip(depth, back))
    with pytest.raises(ValueError, match="finite and >= 0"):
        write_depth_npz(tmp_path / "bad.npz", [np.full((2, 2), -1.0)])
    np.savez(tmp_path / "gap.npz", depth_0=np.zeros((2, 2)), depth_2=np.zeros((2, 2)))
    with pytest.raises(DataFormatError, match="0..1"):
        load_depth_npz(tmp_path / "gap.npz")


# --------------------------------------------------------------------------- issue 12: one array check


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("loader, arrays, fragment", [
    (load_points_npz, {"points": np.array([[0, 0, 0], [np.nan, 0, 0]], np.float16),
                       "occupancies": np.packbits([True, False])}, "points holds 1 NaN/inf value"),
    (load_pointcloud_npz, {"points": np.zeros((4, 3), np.float16),
                           "normals": np.array([[0, 0, 1]] * 3 + [[np.inf, 0, 0]], np.float16)}, "normals holds"),
    (load_points_npz, {"points": np.zeros((2, 3)), "occupancies": np.array([1, 0], np.uint8),
                       "loc": np.array([0, np.nan, 0])}, "loc holds"),
    (load_points_npz, {"points": np.zeros((2, 3)), "occupancies": np.array([1, 0], np.uint8),
                       "scale": np.array(0.0)}, "scale must be positive"),
    (load_points_npz, {"points": np.zeros((3, 100)), "occupancies": np.zeros(100, np.uint8)},
     "looks like 100 points stored as columns"),
    (load_points_npz, {"points": np.array([["a", "b", "c"]]), "occupancies": np.zeros(1, np.uint8)},
     "must be a numeric array"),
    (load_pointcloud_npz, {"points": np.zeros((0, 3)), "normals": np.zeros((0, 3))}, "points is empty (0 points)"),
])
def test_dataset_loaders_refuse_non_finite_and_ambiguous_arrays_naming_the_file(tmp_path, loader, arrays, fragment):
    path = _npz(tmp_path / "object.npz", **arrays)
    with pytest.raises(DataFormatError, match="NaN|numeric|columns|positive|empty") as err:
        loader(path)
    assert str(path) in str(err.value) and fragment in str(err.value)


def test_cameras_with_nan_are_refused(tmp_path):
    path = tmp_path / "cameras.npz"
    np.savez(path, camera_mat_0=np.eye(3), world_mat_0=np.full((3, 4), np.nan))
    with pytest.raises(DataFormatError, match="world_mat_0 holds 12 NaN/inf values"):
        load_cameras_npz(path)


def test_check_array_shapes():
    assert check_array("f", "p", np.zeros((5, 3)), shape=(None, 3)).shape == (5, 3)
    assert check_array("f", "p", np.zeros((5, 6)), min_columns=3).shape == (5, 6)
    with pytest.raises(DataFormatError, match=r"f: p must have shape \(N, 3\), got \(5, 2\)"):
        check_array("f", "p", np.zeros((5, 2)), shape=(None, 3))
    with pytest.raises(DataFormatError, match="ambiguous"):
        check_array("f", "p", np.zeros((3, 7)), min_columns=3)
    assert check_array("f", "p", np.full(3, np.nan), finite=False).shape == (3,)


def test_binvox_of_another_resolution_is_refused_when_a_size_is_required(tmp_path):
    path = tmp_path / "model.binvox"
    write_binvox(path, np.ones((16, 16, 16), bool))
    assert read_binvox(path).shape == (16, 16, 16)
    with pytest.raises(DataFormatError, match=r"model.binvox: voxel grid is 16x16x16; expected 32x32x32"):
        read_binvox(path, shape=(32, 32, 32))


@pytest.mark.parametrize("text, fragment", [
    ("a\nb\na\n", "line 3: model id 'a' is listed twice (first on line 1)"),
    ("a\n../escape\n", "line 2: model id '../escape' must be a plain folder name"),
    ("a\nsub\\dir\n", "must be a plain folder name"),
])
def test_split_lists_refuse_duplicates_and_path_separators(tmp_path, text, fragment):
    path = tmp_path / "train.lst"
    path.write_text(text)
    with pytest.raises(DataFormatError, match="train.lst") as err:
        read_split(path)
    assert fragment in str(err.value)

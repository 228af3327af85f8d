import numpy as np
import pytest
import trimesh
from PIL import Image

from onet.data.formats import load_cameras_npz, load_pointcloud_npz, load_points_npz, read_binvox, read_metadata, read_split
from onet.data.synthetic import CATEGORIES, build_synthetic_dataset, make_shape
from onet.geometry.sampling import sample_uniform_points

REQUIRED = ("table", "chair", "lamp", "sofa", "bottle", "mug")


@pytest.mark.parametrize("category", REQUIRED)
def test_shape_mesh_matches_exact_occupancy(category):
    shape = make_shape(category, np.random.default_rng(7))
    mesh = shape.mesh
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    assert len(mesh.split(only_watertight=False)) == 1  # one connected object
    np.testing.assert_allclose(mesh.bounds.mean(axis=0), 0, atol=1e-9)
    assert mesh.extents.max() == pytest.approx(1.0)
    points = sample_uniform_points(100000, box_size=1.1, rng=np.random.default_rng(0))
    occ = shape.occupancy(points)
    assert occ.dtype == bool and occ.shape == (100000,)
    assert 0.005 < occ.mean() < 0.5
    assert np.mean(occ == mesh.contains(points)) > 0.995


def test_shapes_are_deterministic_and_varied():
    a, b = make_shape("chair", 3), make_shape("chair", 3)
    np.testing.assert_array_equal(a.mesh.vertices, b.mesh.vertices)
    c = make_shape("chair", 4)
    assert a.mesh.extents.tolist() != c.mesh.extents.tolist()
    assert set(REQUIRED) <= set(CATEGORIES)
    with pytest.raises(ValueError, match="unknown synthetic category"):
        make_shape("airplane", 0)


def test_topology_mug_has_a_handle():
    # Euler characteristic 2 - 2 * genus: the handle makes the mug a torus
    assert make_shape("mug", 0).mesh.euler_number == 0
    assert make_shape("lamp", 0).mesh.euler_number == 2
    assert make_shape("bottle", 0).mesh.euler_number == 2


def _build(root, **kw):
    params = dict(n_per_class=4, classes=["mug", "chair"], seed=1, n_views=2, img_size=32, n_points=3000, n_surface=500, progress=False)
    params.update(kw)
    return build_synthetic_dataset(root, **params)


def _mtimes(root):
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_build_dataset_layout(tmp_path):
    root = _build(tmp_path / "ds")
    assert read_metadata(root / "metadata.yaml") == {
        "mug": {"id": "mug", "name": "mug"},
        "chair": {"id": "chair", "name": "chair"},
    }
    for category in ("mug", "chair"):
        splits = {s: read_split(root / category / f"{s}.lst") for s in ("train", "val", "test")}
        ids = sum(splits.values(), [])
        assert sorted(ids) == [f"{category}_{i:04d}" for i in range(4)]
        assert all(len(v) >= 1 for v in splits.values())
    obj = root / "mug" / "mug_0002"
    points = load_points_npz(obj / "points.npz")
    assert points["points"].shape == (3000, 3) and np.abs(points["points"]).max() <= 0.55
    assert np.load(obj / "points.npz")["occupancies"].shape == (375,)
    assert 0 < points["occupancies"].mean() < 0.5
    cloud = load_pointcloud_npz(obj / "pointcloud.npz")
    assert cloud["points"].shape == (500, 3)
    np.testing.assert_allclose(np.linalg.norm(cloud["normals"], axis=1), 1, atol=2e-3)
    voxels = read_binvox(obj / "model.binvox")
    assert voxels.shape == (32, 32, 32) and voxels.any()
    cameras = load_cameras_npz(obj / "img_choy2016" / "cameras.npz")
    assert len(cameras) == 2
    image = np.asarray(Image.open(obj / "img_choy2016" / "001.jpg"))
    assert image.shape == (32, 32, 3) and image[0, 0].min() > 240
    mesh = trimesh.load(obj / "mesh.ply", force="mesh")
    assert mesh.is_watertight
    # the uniform points agree with the reference mesh
    assert np.mean(mesh.contains(points["points"]) == points["occupancies"]) > 0.99


def test_build_dataset_resumes_and_is_deterministic(tmp_path):
    root = _build(tmp_path / "ds")
    before = _mtimes(root)
    _build(root)
    after = _mtimes(root)
    objects = {p: t for p, t in before.items() if "_000" in str(p.parent)}
    assert all(after[p] == t for p, t in objects.items())  # no object file rewritten

    victim = root / "chair" / "chair_0001"
    old_points = (victim / "points.npz").read_bytes()
    (victim / "img_choy2016" / "000.jpg").unlink()
    _build(root)
    again = _mtimes(root)
    assert again[victim / "points.npz"] != before[victim / "points.npz"]  # incomplete object redone
    assert (victim / "points.npz").read_bytes() == old_points  # identically
    other = root / "chair" / "chair_0002" / "points.npz"
    assert again[other] == before[other]

    # a larger dataset keeps the existing objects and only adds new ones
    _build(root, n_per_class=5)
    assert _mtimes(root)[other] == before[other]
    assert len(read_split(root / "mug" / "train.lst") + read_split(root / "mug" / "val.lst") + read_split(root / "mug" / "test.lst")) == 5

    with pytest.raises(ValueError, match="synthetic.yaml.*n_points"):
        _build(root, n_points=100)


def test_build_dataset_in_worker_processes_gives_the_same_files(tmp_path):
    serial = _build(tmp_path / "serial", workers=1)
    parallel = _build(tmp_path / "parallel", workers=2)
    files = sorted(p.relative_to(serial) for p in serial.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(parallel) for p in parallel.rglob("*") if p.is_file())
    assert len(files) > 8 * 5
    for rel in files:
        assert (serial / rel).read_bytes() == (parallel / rel).read_bytes(), rel


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_build_dataset_rejects_bad_worker_counts(tmp_path, workers):
    with pytest.raises(ValueError, match="workers"):
        _build(tmp_path / "ds", workers=workers)

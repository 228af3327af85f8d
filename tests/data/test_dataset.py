"""The loader on a tiny dataset in the PUBLISHED ONet ShapeNet layout (DESIGN §4).

The fixture is written with plain numpy / PIL / bytes, not with onet's writers,
so it pins the file formats themselves: synset folders, float16 points with
packbits occupancies, hand-encoded binvox, 137x137 JPEG views and cameras.npz
with the *_inv_* keys, lists with a trailing newline.
"""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from onet.data.dataset import (DataOptions, DataFormatError, DatasetError, ShapeDataset, category_names, collate,
                               image_tensor, unit_images)
from onet.training import train

SYNSETS = {"02691156": "airplane,aeroplane,plane", "03001627": "chair"}
N_POINTS = 2003  # not a multiple of 8: the packed occupancies end with padding bits
N_SURFACE = 1500
N_VIEWS = 3
RADIUS = {0: 0.3, 1: 0.4}  # each object is a ball of this radius (index within its category)
VIEW_RED = [40, 140, 240]  # every view is one flat colour, so a loaded image tells its view


def _voxel_grid(k: int) -> np.ndarray:
    """An asymmetric 32^3 [x, y, z] grid: a box of extents 4 x 8 x 16 cells (+k along x)."""
    grid = np.zeros((32, 32, 32), dtype=bool)
    grid[2:6 + k, 3:11, 5:21] = True
    return grid


def _binvox_bytes(grid_xyz: np.ndarray) -> bytes:
    """binvox by hand: ASCII header, then (value, count<=255) runs over [x, z, y] order, y fastest."""
    flat = grid_xyz.transpose(0, 2, 1).reshape(-1).astype(np.uint8)
    body = bytearray()
    i = 0
    while i < flat.size:
        j = i
        while j < flat.size and flat[j] == flat[i] and j - i < 255:
            j += 1
        body += bytes([flat[i], j - i])
        i = j
    header = b"#binvox 1\ndim 32 32 32\ntranslate -0.5 -0.5 -0.5\nscale 1\ndata\n"
    return header + bytes(body)


def _write_object(folder, k: int, rng) -> dict:
    folder.mkdir(parents=True)
    r = RADIUS[k % 2]
    points = rng.uniform(-0.55, 0.55, size=(N_POINTS, 3)).astype(np.float16)
    occ = np.linalg.norm(points.astype(np.float32), axis=1) < r
    np.savez(folder / "points.npz", points=points, occupancies=np.packbits(occ),
             loc=np.array([0.01, -0.02, 0.0]), scale=np.array(1.3))
    normals = rng.standard_normal((N_SURFACE, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    np.savez(folder / "pointcloud.npz", points=(r * normals).astype(np.float16), normals=normals.astype(np.float16),
             loc=np.array([0.01, -0.02, 0.0]), scale=np.array(1.3))
    grid = _voxel_grid(k)
    (folder / "model.binvox").write_bytes(_binvox_bytes(grid))
    img_dir = folder / "img_choy2016"
    img_dir.mkdir()
    cams = {}
    for v in range(N_VIEWS):
        Image.new("RGB", (137, 137), (VIEW_RED[v], 90, 30)).save(img_dir / f"{v:03d}.jpg", quality=95)
        K = np.array([[149.8, 0, 68.5], [0, 149.8, 68.5], [0, 0, 1]])
        RT = np.hstack([np.eye(3), [[0], [0], [1.5]]])
        RT4 = np.vstack([RT, [0, 0, 0, 1]])
        cams.update({f"camera_mat_{v}": K, f"world_mat_{v}": RT,
                     f"camera_mat_inv_{v}": np.linalg.inv(K), f"world_mat_inv_{v}": np.linalg.inv(RT4)})
    np.savez(img_dir / "cameras.npz", **cams)
    return {"points": points, "occ": occ, "radius": r, "voxels": grid}


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """root and {(synset, model_id): ground truth}: 2 synsets x 4 objects, lists 2 / 1 / 1."""
    root = tmp_path_factory.mktemp("shapenet")
    rng = np.random.default_rng(0)
    (root / "metadata.yaml").write_text("".join(
        f"'{s}':\n  id: '{s}'\n  name: '{name}'\n" for s, name in SYNSETS.items()))
    truth = {}
    for synset in SYNSETS:
        ids = [f"{synset[-3:]}{k}a9e6b1f0c2d4e{k}f8b7c6d5e4f3a2b1" for k in range(4)]
        for k, model_id in enumerate(ids):
            truth[synset, model_id] = _write_object(root / synset / model_id, k, rng)
        for split, chosen in (("train", ids[:2]), ("val", ids[2:3]), ("test", ids[3:])):
            (root / synset / f"{split}.lst").write_text("\n".join(chosen) + "\n")
    return root, truth


def _options(**kw) -> DataOptions:
    base = dict(input_type="img", img_size=64, points_subsample=2048, points_iou_subsample=None)
    return DataOptions(**{**base, **kw})


def test_splits_categories_and_names(published):
    root, _ = published
    train_ds = ShapeDataset(root, "train", options=_options())
    assert len(train_ds) == 4 and {c for c, _ in train_ds.items} == set(SYNSETS)
    assert len(ShapeDataset(root, "val", options=_options())) == 2
    assert len(ShapeDataset(root, "test", options=_options(), classes=["03001627"])) == 1
    # synset ids stay strings (not octal numbers) and names are the first synonym
    assert category_names(root) == {"02691156": "airplane", "03001627": "chair"}


def test_points_and_occupancies_match_after_unpacking(published):
    root, truth = published
    ds = ShapeDataset(root, "val", options=_options(), mode="val")
    for idx in range(len(ds)):
        item = ds[idx]
        gt = truth[item["category"], item["model_id"]]
        assert item["points"].shape == (N_POINTS, 3) and item["points"].dtype == torch.float32
        # float16 points plus ~1e-4 jitter, labels unpacked from packbits (padding bits dropped)
        diff = (item["points"].numpy() - gt["points"].astype(np.float32))
        assert 0 < np.abs(diff).max() < 1e-3 and 5e-5 < diff.std() < 2e-4
        np.testing.assert_array_equal(item["points.occ"].numpy() > 0.5, gt["occ"])

    train_ds = ShapeDataset(root, "train", options=_options())
    item = train_ds[0]
    gt = truth[item["category"], item["model_id"]]
    assert item["points"].shape == (2048, 3) and item["points.occ"].shape == (2048,)
    # each training sample is a stored point (with jitter) carrying that point's label
    d = torch.cdist(item["points"], torch.from_numpy(gt["points"].astype(np.float32)))
    dist, nearest = d.min(dim=1)
    assert dist.max() < 1e-3
    np.testing.assert_array_equal(item["points.occ"].numpy() > 0.5, gt["occ"][nearest.numpy()])


def test_binvox_is_transposed_to_xyz(published):
    root, truth = published
    ds = ShapeDataset(root, "train", options=_options(input_type="voxels"))
    for idx in range(len(ds)):
        item = ds[idx]
        vox = item["inputs"]
        assert vox.shape == (32, 32, 32) and vox.dtype == torch.float32
        np.testing.assert_array_equal(vox.numpy() > 0.5, truth[item["category"], item["model_id"]]["voxels"])


def _view(image: torch.Tensor) -> int:
    red = float(image[0].mean()) * 255
    return int(np.argmin([abs(red - r) for r in VIEW_RED]))


def test_random_view_in_training_and_view_0_in_val_and_test(published):
    root, _ = published
    train_ds = ShapeDataset(root, "train", options=_options())
    seen = set()
    for epoch in range(12):
        train_ds.epoch = epoch
        image = train_ds[0]["inputs"]
        assert image.shape == (3, 64, 64) and 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        seen.add(_view(image))
    assert seen == {0, 1, 2}
    for split, mode in (("val", "val"), ("test", "test")):
        ds = ShapeDataset(root, split, options=_options(img_size=224), mode=mode)
        for idx in range(len(ds)):
            image = ds[idx]["inputs"]
            assert image.shape == (3, 224, 224) and _view(image) == 0


def test_pointcloud_input_is_300_noisy_surface_points(published):
    root, truth = published
    ds = ShapeDataset(root, "train", options=_options(input_type="pointcloud"))
    item = ds[0]
    pc = item["inputs"]
    assert pc.shape == (300, 3) and pc.dtype == torch.float32
    # radial offsets from the sphere: Gaussian noise sigma 0.005, mean |offset| = 0.005 * sqrt(2 / pi)
    offset = pc.norm(dim=1) - truth[item["category"], item["model_id"]]["radius"]
    assert 0.0025 < float(offset.abs().mean()) < 0.006
    clean = ShapeDataset(root, "train", options=_options(input_type="pointcloud", pointcloud_noise=0.0))[0]["inputs"]
    assert float((clean.norm(dim=1) - truth[item["category"], item["model_id"]]["radius"]).abs().max()) < 1e-3


def test_cache_points_keeps_the_input_cloud_and_draws_the_same_items(published, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(published[0], root)
    opts = dict(input_type="pointcloud", points_subsample=256)
    plain = ShapeDataset(root, "train", options=_options(**opts), seed=3)
    cached = ShapeDataset(root, "train", options=_options(**opts, cache_points=True), seed=3)
    first = [cached[i] for i in range(len(cached))]
    for i, item in enumerate(first):
        for key in ("points", "points.occ", "inputs"):
            assert torch.equal(item[key], plain[i][key])
    for cat, mid in cached.items:  # the files are read once: epoch 2 runs without them
        for name in ("points.npz", "pointcloud.npz"):
            (root / cat / mid / name).unlink()
    cached.epoch = 1
    again = cached[0]
    assert again["inputs"].shape == (300, 3) and not torch.equal(again["inputs"], first[0]["inputs"])


@pytest.mark.parametrize("augment", [False, True])
def test_cache_images_gives_the_same_tensors_and_reads_each_view_once(published, tmp_path, augment):
    root = tmp_path / "copy"
    shutil.copytree(published[0], root)
    rng = np.random.default_rng(0)
    for view in root.glob("*/*/img_choy2016/*.jpg"):  # texture, so that crops and resizing show
        Image.fromarray(rng.integers(0, 256, (137, 137, 3), dtype=np.uint8)).save(view, quality=95)
    opts = dict(img_size=48, img_augment=augment)
    plain = ShapeDataset(root, "train", options=_options(**opts), seed=3)
    cached = ShapeDataset(root, "train", options=_options(**opts, cache_images=True), seed=3)
    drawn = {}
    for epoch in range(6):  # random views, and with augmentation random crops, per epoch
        plain.epoch = cached.epoch = epoch
        for i in range(len(cached)):
            item = cached[i]
            assert torch.equal(item["inputs"], plain[i]["inputs"])
            drawn[(epoch, i)] = item["inputs"]
    assert len(cached._image_cache) >= 2
    for cat, mid in cached.items:  # every view read once: later epochs run without the files
        for f in (root / cat / mid / "img_choy2016").iterdir():
            f.unlink()
    for (epoch, i), image in drawn.items():
        cached.epoch = epoch
        assert torch.equal(cached[i]["inputs"], image)
    with pytest.raises(DataFormatError, match="img_choy2016"):
        plain[0]


@pytest.mark.parametrize("cache_images", [False, True])
def test_image_bytes_become_the_same_floats_after_collating(published, cache_images):
    # the trainer's loader sends images as bytes (4x smaller between processes); unit_images
    # must give exactly the floats of a plain item, whatever the byte
    opts = dict(img_size=48, cache_images=cache_images)
    plain = ShapeDataset(published[0], "train", options=_options(**opts), seed=3)
    as_bytes = ShapeDataset(published[0], "train", options=_options(**opts, image_bytes=True), seed=3)
    items = [as_bytes[i] for i in range(len(as_bytes))]
    assert items[0]["inputs"].dtype == torch.uint8 and items[0]["inputs"].shape == (3, 48, 48)
    batch = unit_images(collate(items))
    expected = collate([plain[i] for i in range(len(plain))])
    assert batch["inputs"].dtype == torch.float32 and torch.equal(batch["inputs"], expected["inputs"])
    assert torch.equal(batch["points"], expected["points"])
    every = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    looked_up = unit_images({"inputs": image_tensor(every, as_bytes=True)[None]})["inputs"][0]
    assert torch.equal(looked_up, image_tensor(every))  # all 256 values, as float32 division gives them
    from onet.data.dataset import _UNIT_OF_BYTE, _UNIT_TABLES  # the table a GPU batch is looked up in
    assert torch.equal(torch.from_numpy(_UNIT_OF_BYTE)[torch.arange(256)], looked_up[0].reshape(-1))
    # the device path (a GPU's), on torch's meta device: shapes and dtype, one table per device
    for _ in range(2):
        on_meta = unit_images({"inputs": image_tensor(every, as_bytes=True)[None].to("meta")})["inputs"]
        assert on_meta.dtype == torch.float32 and on_meta.shape == (1, 3, 16, 16) and on_meta.device.type == "meta"
    assert sum(d.type == "meta" for d in _UNIT_TABLES) == 1
    assert unit_images(expected) is expected  # float inputs (and batches without inputs) pass through


def test_a_gap_in_the_views_is_named_whether_or_not_images_are_cached(published, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(published[0], root)
    ds = ShapeDataset(root, "train", options=_options())
    cat, mid = ds.items[0]
    (root / cat / mid / "img_choy2016" / "001.jpg").unlink()
    for cache in (False, True):
        with pytest.raises(DataFormatError, match="001.jpg"):
            ShapeDataset(root, "train", options=_options(cache_images=cache))[0]


def test_val_sampling_is_seeded_and_training_sampling_is_not_repeated(published):
    root, _ = published
    opts = _options(input_type="pointcloud", points_iou_subsample=500)
    a = ShapeDataset(root, "val", options=opts, mode="val", seed=0)
    b = ShapeDataset(root, "val", options=opts, mode="val", seed=0)
    for key in ("points", "points.occ", "inputs"):
        assert torch.equal(a[0][key], a[0][key]) and torch.equal(a[0][key], b[0][key])
    assert a[0]["points"].shape == (500, 3)
    assert not torch.equal(a[0]["points"], a[1]["points"])
    t = ShapeDataset(root, "train", options=opts, mode="train", seed=0)
    first = t[0]["points"]
    t.epoch = 1
    assert not torch.equal(first, t[0]["points"])
    batch = collate([a[0], a[1]])
    assert batch["points"].shape == (2, 500, 3) and batch["inputs"].shape == (2, 300, 3) and batch["skipped"] == []


@pytest.fixture
def broken(published, tmp_path):
    root = tmp_path / "broken"
    shutil.copytree(published[0], root)
    return root


@pytest.mark.parametrize("name, input_type", [
    ("points.npz", "img"), ("pointcloud.npz", "pointcloud"), ("model.binvox", "voxels"),
    ("img_choy2016/000.jpg", "img"),
])
def test_missing_file_error_names_the_file(broken, name, input_type):
    ds = ShapeDataset(broken, "val", options=_options(input_type=input_type), mode="val")
    path = broken / ds.items[0][0] / ds.items[0][1] / name
    path.unlink()
    with pytest.raises((OSError, ValueError)) as info:
        ds[0]
    message = str(info.value)
    assert str(path) in message or (name.endswith(".jpg") and str(path.parent) in message)


def test_list_entry_without_folder(broken):
    lst = broken / "03001627" / "train.lst"
    lst.write_text(lst.read_text() + "deadbeef_not_there\n")
    with pytest.raises(DatasetError, match="deadbeef_not_there") as info:
        ShapeDataset(broken, "train", options=_options())
    assert str(lst) in str(info.value) and "skip_bad" in str(info.value)
    ds = ShapeDataset(broken, "train", options=_options(skip_bad=True))
    assert len(ds) == 4 and len(ds.problems) == 1 and "deadbeef_not_there" in ds.problems[0]


def test_trainer_reports_skipped_list_entries(broken, tiny_cfg):
    lst = broken / "03001627" / "train.lst"
    lst.write_text(lst.read_text() + "deadbeef_not_there\n")
    tiny_cfg["data"].update(path=str(broken), skip_bad=True, points_iou_subsample=None)
    tiny_cfg["train"].update(max_iters=1, validate_every=1000)
    messages = []
    train(tiny_cfg, progress=False, log=messages.append)
    assert any("skipped 1 train objects" in m and "deadbeef_not_there" in m for m in messages), messages


def _onet_train(root, out_dir, *overrides, env=None):
    cmd = [sys.executable, "-m", "onet", "train", "configs/img.yaml", f"data.path={root}", f"out_dir={out_dir}",
           "train.batch_size=2", "train.max_iters=2", "train.validate_every=1000", "train.checkpoint_every=1000",
           "train.print_every=1", "train.val_batch_size=2", *overrides, "--device", "cpu", "--no-progress"]
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=repo, env=env)


def test_onet_train_img_config_runs_on_the_published_layout(published, tmp_path):
    root, _ = published
    # the thesis model (full ResNet-18, 256-wide decoder); smaller images only to keep the test fast
    done = _onet_train(root, tmp_path / "run", "model.encoder_kwargs={pretrained: false}", "data.img_size=112")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "reached train.max_iters=2" in done.stdout
    assert (tmp_path / "run" / "model.pt").is_file() and (tmp_path / "run" / "model_best.pt").is_file()


def test_onet_train_without_pretrained_weights_offline_says_how_to_provide_them(published, tmp_path):
    root, _ = published
    # an empty torch hub cache and an unreachable proxy: the ImageNet weights cannot be had
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "torch_home"),
           "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"}
    done = _onet_train(root, tmp_path / "run", env=env)
    assert done.returncode in (1, 2)
    assert "Traceback" not in done.stderr
    assert "ResNet-18 weights" in done.stderr
    assert "pretrained: false" in done.stderr and "encoder_kwargs.pretrained" in done.stderr
    assert not (tmp_path / "run" / "model.pt").exists()


# --------------------------------------------------------------------------- near-surface samples (DESIGN §10)

N_NEAR = 999


@pytest.fixture(scope="module")
def with_near(published, tmp_path_factory):
    """The published tree plus points_near_surface.npz for every object but the first training one."""
    src, truth = published
    root = tmp_path_factory.mktemp("near") / "shapenet"
    shutil.copytree(src, root)
    rng = np.random.default_rng(1)
    near = {}
    train_ids = [(s, m) for s in SYNSETS for m in (root / s / "train.lst").read_text().split()]
    for key, gt in truth.items():
        if key == train_ids[0]:
            continue
        # on the sphere of the object's radius, offset by 0.01: labels from the radius
        d = rng.standard_normal((N_NEAR, 3))
        p = (gt["radius"] * d / np.linalg.norm(d, axis=1, keepdims=True) + 0.01 * rng.standard_normal((N_NEAR, 3)))
        p = p.astype(np.float16)
        occ = np.linalg.norm(p.astype(np.float32), axis=1) < gt["radius"]
        np.savez(root / key[0] / key[1] / "points_near_surface.npz", points=p, occupancies=np.packbits(occ),
                 loc=np.zeros(3), scale=np.array(1.0))
        near[key] = (p.astype(np.float32), occ)
    return root, truth, near, train_ids[0]


def _old_training_points(ds: ShapeDataset, idx: int, points: np.ndarray, occ: np.ndarray):
    """The training sample as the loader drew it before near-surface files existed (pins ratio 0)."""
    rng = ds.rng_for(idx)
    sel = rng.integers(0, len(points), size=ds.options.points_subsample)
    p = points[sel] + ds.options.points_jitter * rng.standard_normal((len(sel), 3)).astype(np.float32)
    return p, occ[sel]


def test_ratio_0_draws_exactly_the_published_sample_whether_or_not_the_file_is_there(published, with_near):
    root, truth, _, _ = with_near
    for base in (published[0], root):
        ds = ShapeDataset(base, "train", options=_options(input_type=None, points_near_surface_ratio=0.0))
        for idx in range(len(ds)):
            item = ds[idx]
            gt = truth[item["category"], item["model_id"]]
            p, occ = _old_training_points(ds, idx, gt["points"].astype(np.float32), gt["occ"])
            np.testing.assert_array_equal(item["points"].numpy(), p)
            np.testing.assert_array_equal(item["points.occ"].numpy() > 0.5, occ)


def test_ratio_mixes_near_surface_points_in_training_only(with_near):
    root, truth, near, no_file = with_near
    opts = _options(input_type=None, points_subsample=400, points_near_surface_ratio=0.25, points_iou_subsample=None)
    ds = ShapeDataset(root, "train", options=opts)
    assert ds.count_missing_near_surface() == 1
    for idx in range(len(ds)):
        item = ds[idx]
        key = item["category"], item["model_id"]
        pts, occ = item["points"].numpy(), item["points.occ"].numpy() > 0.5
        assert pts.shape == (400, 3)
        n_near = 0 if key == no_file else 100  # an object without the file trains on uniform points
        r = np.linalg.norm(pts, axis=1)
        near_like = np.abs(r - truth[key]["radius"]) < 0.06
        if n_near:
            # the last 100 are rows of the near file, with their labels
            d = np.linalg.norm(pts[300:, None] - near[key][0][None], axis=2)
            assert d.min(axis=1).max() < 1e-3
            np.testing.assert_array_equal(occ[300:], near[key][1][d.argmin(axis=1)])
            assert near_like[300:].all()
        # the first ones are uniform: about the volume fraction of the shell lies near the surface
        assert near_like[: 400 - n_near].mean() < 0.5
    # validation IoU points stay the uniform ones, all of them
    val = ShapeDataset(root, "val", options=opts, mode="val")
    for idx in range(len(val)):
        item = val[idx]
        gt = truth[item["category"], item["model_id"]]
        assert item["points"].shape == (N_POINTS, 3)
        np.testing.assert_array_equal(item["points.occ"].numpy() > 0.5, gt["occ"])


def test_near_surface_ratio_out_of_range_names_the_key():
    from onet.utils.errors import ConfigError
    with pytest.raises(ConfigError, match="data.points_near_surface_ratio"):
        _options(points_near_surface_ratio=1.5)


def test_ratio_0_trains_the_same_losses_with_and_without_the_file(tiny_cfg, tmp_path):
    import csv

    root = tmp_path / "data"
    shutil.copytree(tiny_cfg["data"]["path"], root)
    losses = []
    for run in ("without", "with"):
        if run == "with":
            for obj in root.glob("*/*/points.npz"):
                shutil.copy(obj, obj.with_name("points_near_surface.npz"))
        cfg = {**tiny_cfg, "out_dir": str(tmp_path / run), "data": {**tiny_cfg["data"], "path": str(root)},
               "train": {**tiny_cfg["train"], "max_iters": 3, "validate_every": 3}}
        train(cfg, progress=False, log=lambda *a: None)
        with open(tmp_path / run / "metrics.csv") as f:
            losses.append([(r["it"], r["loss"], r["val_iou"]) for r in csv.DictReader(f)])
    assert losses[0] == losses[1] and len(losses[0]) == 4


def test_baseline_targets_are_loaded_only_when_asked_for(published):
    """Voxel targets (3D-R2N2) and clean surface points (PSGN), after the inputs' random draws."""
    root, truth = published
    plain = ShapeDataset(root, "val", options=_options(), mode="val")[0]
    assert "voxels" not in plain and "pointcloud" not in plain
    ds = ShapeDataset(root, "val", options=_options(targets=("voxels", "pointcloud"), pointcloud_target_n=50),
                      mode="val")
    item = ds[0]
    gt = truth[item["category"], item["model_id"]]
    np.testing.assert_array_equal(item["voxels"].numpy() > 0.5, gt["voxels"])
    assert item["pointcloud"].shape == (50, 3)
    # noise-free samples of the stored surface (a sphere of the object's radius)
    np.testing.assert_allclose(item["pointcloud"].norm(dim=1).numpy(), gt["radius"], atol=2e-3)
    assert torch.equal(item["points"], plain["points"]) and torch.equal(item["inputs"], plain["inputs"])


def test_symmetries_about_the_up_axis_turn_points_and_grids_alike():
    from onet.data.dataset import turn_about_up_axis
    gen = torch.Generator().manual_seed(0)
    grid = (torch.rand(32, 32, 32, generator=gen) < 0.3).float()  # asymmetric [x, y, z] grid
    idx = torch.randint(0, 32, (500, 3), generator=gen)
    centres = (idx.float() + 0.5) / 32 - 0.5
    item = {"points": centres, "inputs": centres[:100].clone(), "voxels": grid, "points.occ": grid[tuple(idx.t())]}
    seen = set()
    for k in range(8):
        out = turn_about_up_axis(item, k, input_type="pointcloud")
        assert torch.equal(out["points"][:, 1], centres[:, 1])  # y is the axis
        assert torch.equal(out["inputs"], out["points"][:100])
        back = ((out["points"] + 0.5) * 32 - 0.5).round().long()
        assert torch.equal(out["voxels"][tuple(back.t())], item["points.occ"])  # grid and points agree
        seen.add(tuple(out["points"][0].tolist()) + tuple(out["points"][1].tolist()))
    assert len(seen) == 8 and turn_about_up_axis(item, 0, input_type="pointcloud") is item


def test_augmentation_in_training_only_and_not_with_images(published):
    root, _ = published
    opts = dict(input_type="pointcloud", points_subsample=300)
    plain = ShapeDataset(root, "train", options=_options(**opts), seed=1)
    turned = ShapeDataset(root, "train", options=_options(**opts, augment_symmetries=True), seed=1)
    changed = 0
    for i in range(len(plain)):
        a, b = plain[i], turned[i]
        # the same draws, turned: y and the norms stay, the occupancies are the same
        assert torch.equal(a["points.occ"], b["points.occ"])
        assert torch.allclose(a["points"].norm(dim=1), b["points"].norm(dim=1))
        assert torch.equal(a["points"][:, 1], b["points"][:, 1]) and torch.equal(a["inputs"][:, 1], b["inputs"][:, 1])
        changed += not torch.equal(a["points"], b["points"])
    assert changed >= 1
    val = ShapeDataset(root, "val", options=_options(**opts, augment_symmetries=True), mode="val")
    assert torch.equal(val[0]["points"], ShapeDataset(root, "val", options=_options(**opts), mode="val")[0]["points"])
    with pytest.raises(ValueError, match="data.augment_symmetries"):
        _options(input_type="img", augment_symmetries=True)


def test_stretch_keeps_occupancy_of_the_stretched_shape():
    from onet.data.dataset import stretch
    gen = torch.Generator().manual_seed(0)
    pts = torch.rand(4000, 3, generator=gen) - 0.5
    inside = (pts / torch.tensor([0.4, 0.25, 0.3])).norm(dim=1) < 1  # an ellipsoid
    factors = np.array([0.8, 0.95, 0.85])
    out = stretch({"points": pts, "inputs": pts[:300], "pointcloud": pts[300:400], "points.occ": inside.float()},
                  factors, input_type="pointcloud")
    # the stretched points fall inside the ellipsoid stretched by the same factors, and only they
    stretched_axes = torch.tensor([0.4, 0.25, 0.3]) * torch.as_tensor(factors, dtype=torch.float32)
    assert torch.equal((out["points"] / stretched_axes).norm(dim=1) < 1, inside)
    assert torch.equal(out["inputs"], out["points"][:300]) and torch.equal(out["pointcloud"], out["points"][300:400])
    assert out["points"].abs().max() <= 0.5


def test_scale_augmentation_in_training_only_on_point_inputs(published):
    root, _ = published
    opts = dict(input_type="pointcloud", points_subsample=300)
    plain = ShapeDataset(root, "train", options=_options(**opts), seed=1)
    stretched = ShapeDataset(root, "train", options=_options(**opts, augment_scale=0.3), seed=1)
    both = ShapeDataset(root, "train", options=_options(**opts, augment_scale=0.3, augment_symmetries=True), seed=1)
    turned = ShapeDataset(root, "train", options=_options(**opts, augment_symmetries=True), seed=1)
    for i in range(len(plain)):
        a, b, c, d = plain[i], stretched[i], both[i], turned[i]
        assert torch.equal(a["points.occ"], b["points.occ"])
        # the same draws, each axis scaled by one factor in [0.7, 1], inputs with the points
        factors = b["points"] / a["points"]
        assert torch.allclose(factors, factors[0].expand_as(factors), atol=1e-5)
        assert ((factors[0] >= 0.7 - 1e-6) & (factors[0] <= 1 + 1e-6)).all() and not torch.allclose(factors[0], torch.ones(3))
        assert torch.allclose(b["inputs"], a["inputs"] * factors[0], atol=1e-6)
        # with the symmetries: the turn first (the same turn as without scaling), then the stretch
        ratio = c["points"] / d["points"]
        assert torch.allclose(ratio, ratio[0].expand_as(ratio), atol=1e-5) and (ratio[0] <= 1 + 1e-6).all()
    val = ShapeDataset(root, "val", options=_options(**opts, augment_scale=0.3), mode="val")
    assert torch.equal(val[0]["points"], ShapeDataset(root, "val", options=_options(**opts), mode="val")[0]["points"])
    for bad in (dict(augment_scale=1.0), dict(augment_scale=-0.1)):
        with pytest.raises(ValueError, match="data.augment_scale"):
            _options(**opts, **bad)
    for refused in (dict(input_type="img"), dict(input_type="voxels"), dict(input_type=None, targets=("voxels",))):
        with pytest.raises(ValueError, match="data.augment_scale"):
            _options(**{**opts, **refused, "augment_scale": 0.2})

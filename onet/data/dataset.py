"""Dataset of objects in the DESIGN §4 layout (published ONet ShapeNet data or `onet preprocess` output).

One item is one object: occupancy samples for the decoder, the observation for
the encoder (image, point cloud or voxels) and its identity. Training samples
are random; validation and test samples are seeded per object so numbers repeat.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from onet.data import BUILTIN_OBJECTS_PER_CLASS, BUILTIN_SPLIT_FRACTIONS
from onet.data.formats import (
    POINTS_NEAR_SURFACE_FILE,
    DataFormatError,
    OccupancySamples,
    load_pointcloud_npz,
    read_binvox,
    read_metadata,
    read_split,
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VOXEL_RESOLUTION = 32  # the voxel encoder's input grid (DESIGN §5)


class DatasetError(ValueError):
    """The dataset folder is malformed; the message names the file and the fix."""


@dataclass(frozen=True)
class DataOptions:
    """The `data:` section of a config, as explicit options."""

    input_type: str | None = "img"
    points_file: str = "points.npz"
    points_subsample: int = 2048
    points_iou_subsample: int | None = None
    points_jitter: float = 1e-4
    points_near_surface_file: str = POINTS_NEAR_SURFACE_FILE
    points_near_surface_ratio: float = 0.0
    img_folder: str = "img_choy2016"
    img_size: int = 224
    img_augment: bool = False
    augment_symmetries: bool = False
    augment_scale: float = 0.0
    pointcloud_file: str = "pointcloud.npz"
    pointcloud_n: int = 300
    pointcloud_noise: float = 0.005
    voxels_file: str = "model.binvox"
    cache_points: bool = False
    cache_images: bool = False
    skip_bad: bool = False
    pointcloud_target_n: int = 1024
    # extra training targets the model asks for (onet.models.data_targets): "voxels", "pointcloud"
    targets: tuple[str, ...] = ()
    # images as uint8 (3, H, W), for `unit_images` to turn into [0, 1] floats where the batch is
    # used (the trainer: a batch of 64 224-px images leaves a loader worker as 9.6 MB, not 38)
    image_bytes: bool = False

    def __post_init__(self) -> None:
        from onet.utils.errors import ConfigError
        if not 0.0 <= self.points_near_surface_ratio <= 1.0:
            raise ConfigError(f"config key 'data.points_near_surface_ratio' must be in [0, 1], "
                              f"got {self.points_near_surface_ratio!r}")
        if self.augment_symmetries and self.input_type == "img":
            raise ConfigError("config key 'data.augment_symmetries' needs point-cloud or voxel inputs (or none): "
                              "an image cannot be turned with its object's points; set it to false")
        if not 0.0 <= self.augment_scale < 1.0:
            raise ConfigError(f"config key 'data.augment_scale' must be in [0, 1), got {self.augment_scale!r}")
        if self.augment_scale and (self.input_type in ("img", "voxels") or "voxels" in self.targets):
            raise ConfigError("config key 'data.augment_scale' needs point-cloud inputs (or none) and no voxel "
                              f"targets: {self.input_type or 'no'} inputs cannot be stretched with their object's "
                              "points; set it to 0")

    @classmethod
    def from_config(cls, data_cfg: dict, *, targets: tuple[str, ...] = (), image_bytes: bool = False) -> "DataOptions":
        keys = [k for k in cls.__dataclass_fields__ if k not in ("targets", "image_bytes")]
        return cls(**{k: data_cfg[k] for k in keys}, targets=tuple(targets), image_bytes=image_bytes)


BUILTIN_DATASET = Path("data/synthetic")


def ensure_builtin_dataset(path: str | Path, *, seed: int = 0, progress: bool = True, log=print) -> None:
    """Build the synthetic dataset when a config points at the built-in default and it is not there yet."""
    path = Path(path)
    if path.exists() or path != BUILTIN_DATASET:
        return
    from onet.data.synthetic import build_synthetic_dataset
    log(f"{path} does not exist yet: building the built-in synthetic dataset there (a few minutes)")
    build_synthetic_dataset(path, n_per_class=BUILTIN_OBJECTS_PER_CLASS, split_fractions=BUILTIN_SPLIT_FRACTIONS,
                            seed=seed, progress=progress)


def list_categories(root: Path, classes: list[str] | None) -> list[str]:
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root} (set data.path; build one with `onet preprocess`, "
                           "or run `onet demo` for the built-in synthetic dataset)")
    if classes:
        missing = [c for c in classes if not (root / c).is_dir()]
        if missing:
            raise DatasetError(f"{root}: category folder(s) not found: {', '.join(missing)} (check data.classes)")
        return list(classes)
    cats = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not cats:
        raise DatasetError(f"{root}: no category folders found (expected <category>/<model_id>/ as in data/README.md)")
    return cats


def list_items(root: Path, split: str, classes: list[str] | None, *, skip_bad: bool = False) -> tuple[list[tuple[str, str]], list[str]]:
    """(category, model_id) pairs of a split, and the problems met (when skip_bad)."""
    root = Path(root)
    items, problems = [], []
    for cat in list_categories(root, classes):
        lst = root / cat / f"{split}.lst"
        if not lst.is_file():
            raise DatasetError(f"split file not found: {lst} (every category needs {split}.lst)")
        for model_id in read_split(lst):
            if not (root / cat / model_id).is_dir():
                msg = f"{lst}: lists '{model_id}' but folder {root / cat / model_id} does not exist"
                if not skip_bad:
                    raise DatasetError(msg + " (fix the list, or set data.skip_bad=true)")
                problems.append(msg)
                continue
            items.append((cat, model_id))
    return items, problems


def category_names(root: Path) -> dict[str, str]:
    """Category folder -> human-readable name from metadata.yaml (folder name when absent)."""
    path = Path(root) / "metadata.yaml"
    if not path.is_file():
        return {}
    return {k: str(v.get("name", k)).split(",")[0] for k, v in read_metadata(path).items()}


def _seed_for(*parts: object) -> int:
    return zlib.crc32("/".join(str(p) for p in parts).encode())


def read_image(path: Path) -> Image.Image:
    """An image file, decoded to RGB (RGBA composited on white); errors name the file."""
    try:
        with Image.open(path) as img:
            img.load()
            img = to_rgb(img)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise DataFormatError(path, f"cannot read image ({exc})") from None
    if img.width == 0 or img.height == 0:
        raise DataFormatError(path, "image has zero size")
    return img


def resize_image(img: Image.Image, size: int, *, rng: np.random.Generator | None = None,
                 augment: bool = False) -> np.ndarray:
    """(size, size, 3) uint8 array of an RGB image, randomly cropped first when augmenting."""
    if augment and rng is not None:
        # Random scale in [0.75, 1] and a random crop of that size (off by default: it lowered results).
        s = rng.uniform(0.75, 1.0)
        w, h = max(1, int(img.width * s)), max(1, int(img.height * s))
        x0 = int(rng.integers(0, img.width - w + 1))
        y0 = int(rng.integers(0, img.height - h + 1))
        img = img.crop((x0, y0, x0 + w, y0 + h))
    return np.asarray(img.resize((size, size), Image.BILINEAR), dtype=np.uint8)


def _unit(a: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [0, 1]; numpy, one thread: torch's parallel ops stalled the loading
    process on a busy machine (4.7 ms an image against 0.1), and numpy is 2.4x faster here."""
    return a.astype(np.float32) / np.float32(255.0)


# each byte's value in [0, 1], exactly as _unit gives it; copied to each device once (a copy
# from pageable memory would make the host wait for the device's queued work every step)
_UNIT_OF_BYTE = _unit(np.arange(256, dtype=np.uint8))
_UNIT_TABLES: dict[torch.device, torch.Tensor] = {}


def image_tensor(arr: np.ndarray, *, as_bytes: bool = False) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float tensor in [0, 1] (uint8 with as_bytes: see unit_images)."""
    chw = np.ascontiguousarray(arr.transpose(2, 0, 1))  # transposed as bytes, before the 4x larger floats
    return torch.from_numpy(chw if as_bytes else _unit(chw))


def unit_images(batch: dict) -> dict:
    """The batch with uint8 image inputs (DataOptions.image_bytes) as [0, 1] floats, on their device:
    exactly image_tensor's values (on a GPU looked up, not divided: CUDA divides by a number as a
    multiplication by its reciprocal, which rounds 126 of the 256 values differently)."""
    x = batch.get("inputs")
    if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8:
        return batch
    if x.device.type == "cpu":
        return {**batch, "inputs": torch.from_numpy(_unit(x.numpy()))}
    table = _UNIT_TABLES.get(x.device)
    if table is None:
        table = _UNIT_TABLES[x.device] = torch.from_numpy(_UNIT_OF_BYTE).to(x.device)
    return {**batch, "inputs": table[x.long()]}


def load_image(path: Path, size: int, *, rng: np.random.Generator | None = None, augment: bool = False,
               as_bytes: bool = False) -> torch.Tensor:
    """An RGB image file -> (3, size, size) float tensor in [0, 1] (uint8 with as_bytes); RGBA is
    composited on white."""
    return image_tensor(resize_image(read_image(path), size, rng=rng, augment=augment), as_bytes=as_bytes)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; transparency is composited on white, 16-bit is rescaled."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray((arr / peak * 255.0).clip(0, 255).astype(np.uint8), mode="L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB")


def pointcloud_input(points: np.ndarray, n: int, noise: float, rng: np.random.Generator) -> torch.Tensor:
    """Subsample (with replacement when too few) to n points and add Gaussian noise -> (n, 3)."""
    if len(points) == 0:
        raise ValueError("point cloud is empty")
    idx = rng.choice(len(points), size=n, replace=len(points) < n)
    pts = points[idx].astype(np.float32)
    pts = pts + noise * rng.standard_normal(pts.shape).astype(np.float32)
    return torch.from_numpy(pts)


class ShapeDataset(torch.utils.data.Dataset):
    """Objects of one split.

    Item: dict with
      points (T, 3) float32, points.occ (T,) float32 — decoder samples;
      inputs — (3, S, S) image, (N, 3) point cloud, (32, 32, 32) voxels, or an empty tensor;
      voxels (32, 32, 32) float32 — when options.targets has "voxels" (the voxel baseline's target);
      pointcloud (M, 3) float32 — when options.targets has "pointcloud": M = pointcloud_target_n
        surface points, without noise (the point-set baseline's target);
      idx, category, model_id.
    `mode` is 'train' (random subsampling, random view) or 'val'/'test' (seeded, view 0).
    """

    def __init__(self, root: str | Path, split: str, *, options: DataOptions, classes: list[str] | None = None,
                 mode: str = "train", seed: int = 0, items: list[tuple[str, str]] | None = None):
        self.root = Path(root)
        self.options = options
        self.mode = mode
        self.seed = seed
        if items is None:
            items, self.problems = list_items(self.root, split, classes, skip_bad=options.skip_bad)
        else:
            self.problems = []
        self.items = items
        self.epoch = 0
        self._file_cache: dict[Path, Any] = {}  # arrays read from each file (data.cache_points)
        self._image_cache: dict[tuple[Path, int | None], Any] = {}  # decoded views (data.cache_images)
        self._view_lists: dict[Path, list[Path]] = {}  # each object's view files, listed once

    def __len__(self) -> int:
        return len(self.items)

    def rng_for(self, idx: int, epoch: int | None = None) -> np.random.Generator:
        # Seeded per (epoch, object) in training and per object otherwise, so runs repeat
        # whatever the number of DataLoader workers.
        if self.mode == "train":
            epoch = self.epoch if epoch is None else epoch
            return np.random.default_rng(_seed_for(self.seed, "train", epoch, *self.items[idx]))
        return np.random.default_rng(_seed_for(self.seed, *self.items[idx]))

    def __getitem__(self, key: int | tuple[int, int]) -> dict | None:
        """Object `key`, or key = (object, epoch): the epoch's draws whatever self.epoch says
        (training streams batches of several epochs through the same loader workers)."""
        idx, epoch = key if isinstance(key, tuple) else (key, None)  # None: load's self.epoch
        try:
            return self.load(idx, epoch)
        except Exception as exc:  # any failure to load one object is that object's (named, or skipped)
            if not isinstance(exc, (DataFormatError, OSError)):  # these name their file already
                exc = DataFormatError(self.root / self.items[idx][0] / self.items[idx][1],
                                      f"cannot load this object ({type(exc).__name__}: {exc})")
            if not self.options.skip_bad:
                raise exc from None
            return {"skipped": f"{self.items[idx][0]}/{self.items[idx][1]}: {exc}"}

    def load(self, idx: int, epoch: int | None = None) -> dict:
        epoch = self.epoch if epoch is None else epoch
        cat, model_id = self.items[idx]
        folder = self.root / cat / model_id
        opt = self.options
        rng = self.rng_for(idx, epoch)
        samples = self._points(folder / opt.points_file)
        n = opt.points_subsample if self.mode == "train" else opt.points_iou_subsample
        n_near = self.n_near_surface(n, folder)
        points, occ = samples.take(None if n is None else rng.integers(0, len(samples), size=n - n_near))
        if n_near:
            near = self._points(folder / opt.points_near_surface_file)
            near_points, near_occ = near.take(rng.integers(0, len(near), size=n_near))
            points, occ = np.concatenate([points, near_points]), np.concatenate([occ, near_occ])
        if opt.points_jitter > 0:
            # jitter after subsampling: it only breaks the float16 lattice, so it is needed on the used points only
            points = points + opt.points_jitter * rng.standard_normal(points.shape).astype(np.float32)
        item = {
            "points": torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)),
            "points.occ": torch.from_numpy(occ.astype(np.float32)),
            "inputs": self.load_inputs(folder, rng),
            "idx": idx,
            "category": cat,
            "model_id": model_id,
        }
        # targets come after the inputs, so the inputs' random draws do not depend on them
        if "voxels" in opt.targets:
            item["voxels"] = torch.from_numpy(read_binvox(folder / opt.voxels_file).astype(np.float32))
        if "pointcloud" in opt.targets:
            path = folder / opt.pointcloud_file
            try:
                surface = load_pointcloud_npz(path, as_stored=True, normals=False)["points"]
                item["pointcloud"] = pointcloud_input(surface, opt.pointcloud_target_n, 0.0, rng)
            except ValueError as exc:
                raise DataFormatError(path, str(exc)) from None
        if self.mode == "train" and (opt.augment_symmetries or opt.augment_scale):
            # its own stream: the draws above are the same with and without augmentation
            aug = np.random.default_rng(_seed_for(self.seed, "augment", epoch, cat, model_id))
            if opt.augment_symmetries:
                item = turn_about_up_axis(item, int(aug.integers(8)), input_type=opt.input_type)
            if opt.augment_scale:
                item = stretch(item, aug.uniform(1.0 - opt.augment_scale, 1.0, size=3), input_type=opt.input_type)
        return item

    def n_near_surface(self, n: int | None, folder: Path) -> int:
        """How many of an object's n training points come from the near-surface file.

        Only in training (validation and test IoU stay on the uniform points, as the
        thesis defines them), and only where the file exists: an object without it
        trains on uniform points alone, exactly as in the published layout.
        """
        ratio = self.options.points_near_surface_ratio
        if self.mode != "train" or n is None or ratio <= 0:
            return 0
        if not (folder / self.options.points_near_surface_file).is_file():
            return 0
        return int(round(ratio * n))

    def count_missing_near_surface(self) -> int:
        """Objects of this split without the near-surface file (they train on uniform points only)."""
        return len(self.items) - len(self.indices_with(self.options.points_near_surface_file))

    def indices_with(self, name: str) -> list[int]:
        """Indices of the objects whose folder holds the file `name`."""
        return [i for i, (cat, mid) in enumerate(self.items) if (self.root / cat / mid / name).is_file()]

    def _cached(self, path: Path, read: Callable[[Path], Any]) -> Any:
        """read(path), kept in memory after the first call when data.cache_points is set."""
        if path in self._file_cache:
            return self._file_cache[path]
        value = read(path)
        if self.options.cache_points:
            self._file_cache[path] = value
        return value

    def _views(self, img_dir: Path) -> list[Path]:
        """The view images of one object, in view order, checked once per object."""
        files = self._view_lists.get(img_dir)
        if files is not None:
            return files
        if not img_dir.is_dir():
            raise DataFormatError(img_dir, "image folder not found (check data.img_folder)")
        files = sorted(p for p in img_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataFormatError(img_dir, "no .jpg/.png images")
        numbers = [int(p.stem) for p in files if p.stem.isdigit()]
        if len(numbers) == len(files) and max(numbers) >= len(files):
            # numbered views (000.jpg, ...) with a gap: view 0 must be 000.jpg, never a neighbour
            gap = min(set(range(len(files) + 1)) - set(numbers))
            missing = img_dir / f"{gap:0{len(files[0].stem)}d}{files[0].suffix}"
            raise DataFormatError(missing, f"view image missing (views must be numbered 0..{max(numbers)} "
                                           "without gaps); restore it or remove the object from the lists")
        self._view_lists[img_dir] = files
        return files

    def _points(self, path: Path) -> OccupancySamples:
        """One occupancy file as stored (rows convert when drawn), cached when asked."""
        return self._cached(path, OccupancySamples)

    def load_inputs(self, folder: Path, rng: np.random.Generator) -> torch.Tensor:
        opt = self.options
        if opt.input_type == "img":
            files = self._views(folder / opt.img_folder)
            view = int(rng.integers(len(files))) if self.mode == "train" else 0
            augment = opt.img_augment and self.mode == "train"
            if not opt.cache_images:
                return load_image(files[view], opt.img_size, rng=rng, augment=augment, as_bytes=opt.image_bytes)
            # decoded once; resized once too unless each draw crops it anew
            key = (files[view], None if augment else opt.img_size)
            cached = self._image_cache.get(key)
            if cached is None:
                img = read_image(files[view])
                cached = self._image_cache[key] = img if augment else resize_image(img, opt.img_size)
            arr = resize_image(cached, opt.img_size, rng=rng, augment=True) if augment else cached
            return image_tensor(arr, as_bytes=opt.image_bytes)
        if opt.input_type == "pointcloud":
            path = folder / opt.pointcloud_file
            # the input cloud is drawn anew each epoch from the same surface points
            surface = self._cached(path, lambda p: load_pointcloud_npz(p, as_stored=True, normals=False)["points"])
            try:
                return pointcloud_input(surface, opt.pointcloud_n, opt.pointcloud_noise, rng)
            except ValueError as exc:
                raise DataFormatError(path, str(exc)) from None
        if opt.input_type == "voxels":
            vox = read_binvox(folder / opt.voxels_file, shape=(VOXEL_RESOLUTION,) * 3)
            return torch.from_numpy(vox.astype(np.float32))
        return torch.empty(0)


def turn_about_up_axis(item: dict, k: int, *, input_type: str | None) -> dict:
    """Symmetry k (0-7) of the square about the up axis y: swap x and z when k & 1, then negate
    x when k & 2 and z when k & 4, on every 3-D field of an item alike (points, point-cloud inputs
    and targets, voxel grids [x, y, z]). The unit box maps onto itself, so occupancies stay right.
    k = 0 is the identity."""
    if not k:
        return item

    def points(p: torch.Tensor) -> torch.Tensor:
        p = p[:, [2, 1, 0]] if k & 1 else p.clone()
        if k & 2:
            p[:, 0] = -p[:, 0]
        if k & 4:
            p[:, 2] = -p[:, 2]
        return p

    def grid(v: torch.Tensor) -> torch.Tensor:
        v = v.permute(2, 1, 0) if k & 1 else v
        dims = [d for d, bit in ((0, 2), (2, 4)) if k & bit]
        return (v.flip(dims) if dims else v).contiguous()

    out = {**item, "points": points(item["points"])}
    if input_type == "pointcloud":
        out["inputs"] = points(item["inputs"])
    elif input_type == "voxels":
        out["inputs"] = grid(item["inputs"])
    if "pointcloud" in item:
        out["pointcloud"] = points(item["pointcloud"])
    if "voxels" in item:
        out["voxels"] = grid(item["voxels"])
    return out


def stretch(item: dict, scale: np.ndarray, *, input_type: str | None) -> dict:
    """Every point field of an item scaled by scale[axis] about the box centre. Occupancy is kept
    by any such map (a point is inside the stretched mesh iff its preimage is inside the mesh), and
    factors <= 1 keep the object within the box; grids and images have no exact counterpart."""
    factors = torch.as_tensor(scale, dtype=torch.float32)
    out = {**item, "points": item["points"] * factors}
    if input_type == "pointcloud":
        out["inputs"] = item["inputs"] * factors
    if "pointcloud" in item:
        out["pointcloud"] = item["pointcloud"] * factors
    return out


def collate(batch: list[dict]) -> dict:
    """Stack items; items that failed to load (skip_bad) are dropped and counted."""
    good = [b for b in batch if "skipped" not in b]
    skipped = [b["skipped"] for b in batch if "skipped" in b]
    out: dict = {"skipped": skipped}
    if not good:
        return out
    for key in good[0]:
        values = [b[key] for b in good]
        if isinstance(values[0], torch.Tensor):
            # torch's collate stacks straight into shared memory in a loader worker: a plain stack
            # and the copy into shared memory on sending cost 55 ms of a batch of 64 images, this 15
            out[key] = torch.utils.data.default_collate(values)
        elif isinstance(values[0], int):
            out[key] = torch.tensor(values)
        else:
            out[key] = values
    return out


"""`onet preprocess`: a folder of raw meshes -> a training dataset (DESIGN §4).

Per object (`process_object`): load and clean (`onet.geometry.mesh_io.load_mesh`), normalise
(bounding box centred, longest edge 1; loc/scale stored), make watertight
(`watertight.make_watertight`), then write into <output>/<category>/<model_id>/:

    points.npz          n_points uniform in the 1.1 box, occupancy of the watertight mesh
    points_near_surface.npz  only when n_near_surface > 0: surface samples of the watertight
                        mesh plus Gaussian offsets (one or two scales), with their occupancy;
                        same layout as points.npz (an addition beside the published files, DESIGN §10)
    pointcloud.npz      n_surface samples with normals on the watertight mesh
    model.binvox        voxel_resolution^3 voxels of the watertight mesh
    <img_folder>/000.jpg..  n_views renderings of the (normalised) input mesh with its
                        materials (texture maps, vertex/face/material colours; grey
                        where the file has none),
    <img_folder>/depth.npz      only with depth: their depth maps (onet.data.formats),
    <img_folder>/cameras.npz    and their cameras (written last)
    mesh.ply            the watertight normalised mesh (when save_mesh)

Every file is written atomically. An object whose files are all present is
skipped, so a killed run is finished by running it again. <output>/stamp.yaml
records the options that made the dataset (onet.utils.stamp): a rerun with
other options is refused unless `overwrite`, which deletes the objects of this
shard first. Each object goes through the per-item rule of onet.utils.batch:
any exception is recorded as that object's failure and the run goes on.
Per-object records (status ok / warning / failed, reason, stage timings) are
appended to <output>/preprocess_report.jsonl
(preprocess_report.shard<i>of<n>.jsonl for shards); one JSON object a line,
a torn last line after a kill is skipped by `read_report`.

Splits and metadata.yaml depend only on the input listing (and `seed` or the
given lists), so every shard computes the same assignment; each shard writes
the lists at its end with the objects complete at that moment, so the last
shard to finish (or any rerun) leaves the full lists.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import sys
import time
import zlib
from concurrent.futures import as_completed
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from onet.data.formats import POINTS_NEAR_SURFACE_FILE
from onet.geometry.formats import describe_readable, unread_advice
from onet.geometry.normalize import UP_AXES
from onet.preprocess.discover import InputItem, describe_unread, scan_inputs
from onet.utils.batch import attempt, describe, stops_the_run
from onet.utils.parallel import worker_pool
from onet.utils.stamp import claim_folder

REPORT_NAME = "preprocess_report.jsonl"
SPLITS = ("train", "val", "test")
STAGES = ("load", "watertight", "sample", "voxelize", "render", "save")

# the 13 ShapeNet classes of the ONet experiments, for metadata.yaml names
SHAPENET_NAMES = {
    "02691156": "airplane,aeroplane,plane",
    "02828884": "bench",
    "02933112": "cabinet",
    "02958343": "car,auto,automobile,machine,motorcar",
    "03001627": "chair",
    "03211117": "display,video display",
    "03636649": "lamp",
    "03691459": "loudspeaker,speaker,speaker unit,loudspeaker system,speaker system",
    "04090263": "rifle",
    "04256520": "sofa,couch,lounge",
    "04379243": "table",
    "04401088": "telephone,phone,telephone set",
    "04530566": "vessel,watercraft",
}


@dataclass(frozen=True)
class PreprocessOptions:
    """What `preprocess_dataset` writes per object; defaults match the ONet data.

    Attributes:
        n_points: uniform occupancy points in the 1.1 box (points.npz).
        n_surface: surface samples with normals (pointcloud.npz).
        n_near_surface: occupancy points near the surface, stored in
            points_near_surface.npz; 0 writes no such file.
        near_surface_sigma: std (unit-cube units) of their Gaussian offset from the
            surface: one scale, or two (the points are split evenly between them).
        voxel_resolution: side of model.binvox.
        n_views, img_size, img_folder: renderings and where they go.
        materials: render with the mesh's colours and textures (False: all grey).
        depth: also write the depth maps of the views (<img_folder>/depth.npz).
        watertight_resolution, watertight_directions, visible_fraction:
            passed to `make_watertight` (resolution, n_directions, visible_fraction).
        save_mesh: write the watertight mesh as mesh.ply (evaluation reference).
        seed: base seed; each object's seed derives from it and its ids.
        split_fractions: train/val/test fractions for seeded splits.
        splits_from: folder with given lists, <category>/{train,val,test}.lst
            or {train,val,test}.lst for all categories; overrides the fractions.
        up_axis: the axis the input files point up (y, z, x, -y, -z, -x): each mesh is
            rotated so that it points up +y, as ShapeNet does, before normalising.
    """

    n_points: int = 100000
    n_surface: int = 100000
    n_near_surface: int = 0
    near_surface_sigma: tuple[float, ...] = (0.01,)
    voxel_resolution: int = 32
    n_views: int = 24
    img_size: int = 137
    img_folder: str = "img_choy2016"
    materials: bool = True
    depth: bool = False
    watertight_resolution: int = 128
    watertight_directions: int = 24
    visible_fraction: float = 0.2
    save_mesh: bool = True
    seed: int = 0
    split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    splits_from: str | None = None
    up_axis: str = "y"

    def __post_init__(self) -> None:
        for name in ("n_points", "n_surface", "voxel_resolution", "n_views", "img_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"PreprocessOptions.{name} must be >= 1, got {getattr(self, name)}")
        if self.n_near_surface < 0:
            raise ValueError(f"PreprocessOptions.n_near_surface must be >= 0, got {self.n_near_surface}")
        sigma = self.near_surface_sigma
        sigma = (sigma,) if isinstance(sigma, (int, float)) else tuple(sigma)
        if not 1 <= len(sigma) <= 2 or not all(0 < float(x) <= 0.5 for x in sigma):
            raise ValueError(f"PreprocessOptions.near_surface_sigma must be one or two numbers in (0, 0.5], got {self.near_surface_sigma}")
        object.__setattr__(self, "near_surface_sigma", tuple(float(x) for x in sigma))
        if self.watertight_resolution < 8 or self.watertight_resolution % 2:
            raise ValueError(f"PreprocessOptions.watertight_resolution must be even and >= 8, got {self.watertight_resolution}")
        fr = tuple(float(f) for f in self.split_fractions)
        if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1.0) > 1e-6:
            raise ValueError(f"PreprocessOptions.split_fractions must be 3 non-negative numbers summing to 1, got {self.split_fractions}")
        if self.up_axis not in UP_AXES:
            raise ValueError(f"PreprocessOptions.up_axis must be one of {', '.join(UP_AXES)}, got {self.up_axis!r}")
        if not self.img_folder or "/" in self.img_folder or self.img_folder.startswith("."):
            raise ValueError(f"PreprocessOptions.img_folder must be a plain folder name, got {self.img_folder!r}")

    def output_files(self) -> list[str]:
        """Files (relative to the object folder) that make an object complete."""
        files = ["points.npz", "pointcloud.npz", "model.binvox"]
        if self.n_near_surface > 0:
            files.append(POINTS_NEAR_SURFACE_FILE)
        files += [f"{self.img_folder}/{i:03d}.jpg" for i in range(self.n_views)]
        if self.depth:
            files.append(f"{self.img_folder}/depth.npz")
        files.append(f"{self.img_folder}/cameras.npz")
        if self.save_mesh:
            files.append("mesh.ply")
        return files


@dataclass
class ObjectResult:
    """Outcome for one object: status is "ok", "warning" (done, with a caveat in reason), "failed" or "skipped"."""

    item: InputItem
    status: str
    reason: str = ""
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class PreprocessSummary:
    n_ok: int
    n_failed: int
    n_skipped: int
    failures: list[tuple[InputItem, str]]
    report_path: Path
    mean_timings: dict[str, float]  # mean seconds per processed object, per stage
    warnings: list[tuple[InputItem | None, str]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1 when any object failed (the batch rule of onet.utils.batch), else 0."""
        return 1 if self.failures else 0


def object_folder(output_dir: str | os.PathLike, item: InputItem) -> Path:
    return Path(output_dir) / item.category / item.model_id


def is_complete(folder: Path, options: PreprocessOptions) -> bool:
    return all((folder / f).is_file() for f in options.output_files())


def object_seed(seed: int, item: InputItem) -> np.random.SeedSequence:
    """Seed of one object: independent of listing order, worker and shard."""
    return np.random.SeedSequence([seed, zlib.crc32(item.category.encode()), zlib.crc32(item.model_id.encode())])


def process_object(item: InputItem, output_dir: str | os.PathLike, options: PreprocessOptions) -> ObjectResult:
    """Preprocess one object into <output>/<category>/<model_id>/; never raises for bad input."""
    folder = object_folder(output_dir, item)
    if is_complete(folder, options):
        return ObjectResult(item, "skipped")
    _remove_stale_temporaries(folder, options)
    timings: dict[str, float] = {}
    outcome = attempt(_build_object, item, folder, options, timings)  # one bad object must not stop a dataset run
    if not outcome.ok:
        return ObjectResult(item, "failed", outcome.error, timings)
    return ObjectResult(item, "warning" if outcome.value else "ok", outcome.value or "", timings)


def _remove_stale_temporaries(folder: Path, options: PreprocessOptions) -> None:
    """Delete temporaries a killed run left (onet.utils.io names them .<name>.*.tmp*)."""
    for sub in (folder, folder / options.img_folder):
        if sub.is_dir():
            for p in sub.iterdir():
                if p.name.startswith(".") and ".tmp" in p.name and p.is_file():
                    p.unlink(missing_ok=True)


class _Timer:
    def __init__(self, timings: dict[str, float], stage: str):
        self.timings, self.stage = timings, stage

    def __enter__(self):
        self.t0 = time.perf_counter()

    def __exit__(self, *exc):
        self.timings[self.stage] = self.timings.get(self.stage, 0.0) + time.perf_counter() - self.t0


def near_surface_points(vertices: np.ndarray, faces: np.ndarray, n: int, sigma: Sequence[float], *,
                        rng: np.random.Generator) -> np.ndarray:
    """n points around a mesh's surface -> (n, 3) float32, exactly representable in float16.

    Surface samples plus N(0, s^2) offsets; with two scales, point i uses sigma[i % 2]
    (a fine scale resolves the surface, a coarse one its neighbourhood). Clipped to the
    1.1 box and rounded to float16, the precision they are stored at, so the labels
    computed for them are the labels of the stored values.
    """
    from onet.geometry.sampling import sample_surface

    near, _ = sample_surface(vertices, faces, n, rng=rng)
    scale = np.asarray(sigma, dtype=np.float32)[np.arange(n) % len(sigma)]
    near = near + scale[:, None] * rng.standard_normal(near.shape).astype(np.float32)
    return np.clip(near, -0.55, 0.55).astype(np.float16).astype(np.float32)


def _build_object(item: InputItem, folder: Path, options: PreprocessOptions, timings: dict[str, float]) -> str:
    """Write every file of one object; returns a warning ("" when none)."""
    # imported here so listing inputs and reading reports need none of the heavy stages
    import trimesh
    from PIL import Image

    from onet.data.formats import (write_binvox, write_cameras_npz, write_depth_npz, write_pointcloud_npz,
                                   write_points_npz)
    from onet.geometry.inside import inside_mesh
    from onet.geometry.mesh_io import load_mesh, load_mesh_with_appearance
    from onet.geometry.normalize import normalize_mesh, up_axis_rotation
    from onet.geometry.render import default_cameras, render_views
    from onet.geometry.sampling import sample_surface, sample_uniform_points
    from onet.geometry.voxelize import voxelize
    from onet.preprocess.watertight import make_watertight
    from onet.utils.io import write_bytes_atomic

    points_seq, near_seq, surface_seq, camera_seq = object_seed(options.seed, item).spawn(4)
    with _Timer(timings, "load"):
        if options.materials:
            mesh, appearance = load_mesh_with_appearance(item.path)
        else:
            mesh, appearance = load_mesh(item.path), None
        warning = mesh.metadata.get("onet_dropped", "")
        if options.up_axis != "y":  # a proper rotation: faces, normals and appearance stay valid
            mesh.vertices = mesh.vertices @ up_axis_rotation(options.up_axis).T
        mesh, loc, scale = normalize_mesh(mesh)  # vertices move, faces keep their order: appearance still fits
    with _Timer(timings, "watertight"):
        wv, wf = make_watertight(
            mesh.vertices,
            mesh.faces,
            resolution=options.watertight_resolution,
            n_directions=options.watertight_directions,
            visible_fraction=options.visible_fraction,
        )
        wt = trimesh.Trimesh(wv, wf, process=False)

    def occupancy(p: np.ndarray) -> np.ndarray:
        return inside_mesh(wv, wf, p)

    with _Timer(timings, "sample"):
        # labels are computed for the float16 values that are stored
        points = sample_uniform_points(options.n_points, box_size=1.1, rng=np.random.default_rng(points_seq))
        points = points.astype(np.float16).astype(np.float32)
        write_points_npz(folder / "points.npz", points, occupancy(points), loc=loc, scale=scale)
        if options.n_near_surface > 0:
            near = near_surface_points(wv, wf, options.n_near_surface, options.near_surface_sigma,
                                       rng=np.random.default_rng(near_seq))
            write_points_npz(folder / POINTS_NEAR_SURFACE_FILE, near, occupancy(near), loc=loc, scale=scale)
        surface, normals = sample_surface(wv, wf, options.n_surface, rng=np.random.default_rng(surface_seq))
        write_pointcloud_npz(folder / "pointcloud.npz", surface, normals, loc=loc, scale=scale)
    with _Timer(timings, "voxelize"):
        voxels = voxelize(wv, wf, resolution=options.voxel_resolution, occupancy_fn=occupancy)
        write_binvox(folder / "model.binvox", voxels)
    with _Timer(timings, "render"):
        # the input, not the watertight mesh: images should look like the object
        camera_seed = int(np.random.default_rng(camera_seq).integers(2**31))
        cameras = default_cameras(options.n_views, size=options.img_size, seed=camera_seed)
        renders = render_views(mesh.vertices, mesh.faces, cameras, size=options.img_size, appearance=appearance)
        for i, image in enumerate(renders.images):
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, format="JPEG", quality=95)
            write_bytes_atomic(folder / options.img_folder / f"{i:03d}.jpg", buf.getvalue())
        if options.depth:
            write_depth_npz(folder / options.img_folder / "depth.npz", renders.depth)
        write_cameras_npz(folder / options.img_folder / "cameras.npz", cameras)
    with _Timer(timings, "save"):
        if options.save_mesh:
            write_bytes_atomic(folder / "mesh.ply", wt.export(file_type="ply"))
    return warning


# --------------------------------------------------------------------------- dataset


def preprocess_dataset(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    options: PreprocessOptions = PreprocessOptions(),
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    overwrite: bool = False,
) -> PreprocessSummary:
    """Preprocess every object found in `input_dir` (see `find_inputs`) into `output_dir`.

    Args:
        options: what to write per object.
        overwrite: redo this shard's objects (their folders are deleted first), also
            when the dataset was made with other options; without it a rerun with other
            options raises OptionsMismatch (a UsageError) naming them.
        workers: processes working in parallel (each single-threaded).
        shard: (i, n) takes the objects whose index in the sorted listing is
            i modulo n, for cluster array jobs; splits cover all objects.
        progress: show a tqdm progress bar on stderr.
    Returns:
        PreprocessSummary; the report file holds one record per object.
    """
    i, n = (int(s) for s in shard)
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    output_dir = Path(output_dir)
    inside = Path(input_dir).resolve()
    if output_dir.resolve() == inside or inside in output_dir.resolve().parents:
        from onet.utils.errors import UsageError
        raise UsageError(f"OUTPUT {output_dir} is inside INPUT {input_dir}: a rerun would read the meshes it wrote "
                         "(mesh.ply) as new inputs; choose an output folder outside the input folder")
    items, unread_counts = scan_inputs(input_dir)
    unread = describe_unread(unread_counts)
    readable = describe_readable()
    if not items:
        raise FileNotFoundError(f"{input_dir}: no mesh files found (looked for {readable})"
                                + (f"; it holds {unread}, which onet does not read: {unread_advice(unread_counts)}"
                                   if unread else ""))
    splits = assign_splits(items, options)  # before any work: a bad --splits-from fails fast
    mine = items[i::n]
    report_path = output_dir / (REPORT_NAME if n == 1 else f"preprocess_report.shard{i}of{n}.jsonl")

    def clear() -> None:  # the objects of this shard, and its report
        for item in mine:
            shutil.rmtree(object_folder(output_dir, item), ignore_errors=True)
        report_path.unlink(missing_ok=True)

    output_dir.mkdir(parents=True, exist_ok=True)
    claim_folder(output_dir, "preprocess", _stamp_options(options), overwrite=overwrite, clear=clear,
                 what="a dataset")

    results: list[ObjectResult] = []
    bar = _progress_bar(len(mine), progress)
    with closing(_run(mine, output_dir, options, workers)) as run:  # an interrupt here stops the workers too
        for result in run:
            results.append(result)
            if result.status != "skipped":
                _append_report(report_path, result)
            bar.update(1)
            bar.set_postfix(failed=sum(r.status == "failed" for r in results), refresh=False)
    bar.close()

    written = write_splits(output_dir, splits, options)
    warnings: list[tuple[InputItem | None, str]] = [(r.item, r.reason) for r in results if r.status == "warning"]
    if unread:
        warnings.append((None, f"left out {unread} under {input_dir}: onet does not read these formats; "
                               f"{unread_advice(unread_counts)}"))
    warnings += [(None, w) for w in empty_split_warnings(written)]
    stages = [r.timings for r in results if r.status in ("ok", "warning")]
    mean = {s: float(np.mean([t.get(s, 0.0) for t in stages])) for s in STAGES} if stages else {}
    failures = [(r.item, r.reason) for r in results if r.status == "failed"]
    return PreprocessSummary(
        n_ok=sum(r.status in ("ok", "warning") for r in results),
        n_failed=len(failures),
        n_skipped=sum(r.status == "skipped" for r in results),
        failures=failures,
        report_path=report_path,
        mean_timings=mean,
        warnings=warnings,
    )


def _stamp_options(options: PreprocessOptions) -> dict:
    """What the files of every object depend on: all options (the split source as an absolute path)."""
    d = dataclasses.asdict(options)
    if d["up_axis"] == "y":  # the default, left out: datasets made before the option match
        del d["up_axis"]
    if d["splits_from"] is not None:
        d["splits_from"] = str(Path(d["splits_from"]).resolve())
    return d


def empty_split_warnings(splits: dict[str, dict[str, list[str]]]) -> list[str]:
    """One line per category whose train, val or test list is empty (it trains or scores nothing there)."""
    out = []
    for cat, lists in sorted(splits.items()):
        empty = [s for s in SPLITS if not lists[s]]
        if empty:
            n = sum(len(v) for v in lists.values())
            out.append(f"category {cat}: the {'/'.join(empty)} split{'s are' if len(empty) > 1 else ' is'} empty "
                       f"({n} objects in all)")
    return out


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc="preprocess", unit="obj", disable=not enabled, file=sys.stderr)


def _run(items: Sequence[InputItem], output_dir: Path, options: PreprocessOptions, workers: int):
    """Yield an ObjectResult per item, in completion order."""
    if workers == 1 or len(items) <= 1:
        for item in items:
            yield process_object(item, output_dir, options)
        return
    with worker_pool(workers) as pool:
        futures = {pool.submit(process_object, item, output_dir, options): item for item in items}
        try:
            for fut in as_completed(futures):
                try:
                    yield fut.result()
                except BrokenProcessPool:
                    raise
                except Exception as e:  # e.g. an unpicklable result; a full disk stops the run
                    if stops_the_run(e):
                        raise
                    yield ObjectResult(futures[fut], "failed", describe(e))
        except BrokenProcessPool:
            # a worker died (killed, out of memory, crash in native code): report what is
            # left as failed; a rerun retries it
            for fut, item in futures.items():
                if not fut.done() or fut.exception() is not None:
                    yield ObjectResult(item, "failed", "worker process died (out of memory or crashed?)")


def _append_report(path: Path, result: ObjectResult) -> None:
    record = {
        "category": result.item.category,
        "model_id": result.item.model_id,
        "path": str(result.item.path),
        "status": result.status,
        "reason": result.reason,
        "timings": {k: round(v, 4) for k, v in result.timings.items()},
    }
    line = (json.dumps(record) + "\n").encode("utf-8")
    # one write on an O_APPEND descriptor: lines from concurrent shards never interleave
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_report(path: str | os.PathLike) -> list[dict]:
    """Records of a report file, skipping a torn line left by a killed run."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


# --------------------------------------------------------------------------- splits


def assign_splits(items: Sequence[InputItem], options: PreprocessOptions) -> dict[str, dict[str, list[str]]]:
    """{category: {split: sorted model ids}} from the full listing.

    Seeded: per category, the sorted ids are shuffled with (seed, category)
    and cut by split_fractions (rounded; a non-empty val/test split when
    there are enough objects). With splits_from the given lists are used,
    keeping only ids that are in the input.
    """
    by_cat: dict[str, list[str]] = {}
    for it in items:
        by_cat.setdefault(it.category, []).append(it.model_id)
    out = {}
    for cat, ids in sorted(by_cat.items()):
        ids = sorted(ids)
        if options.splits_from is not None:
            out[cat] = _given_splits(Path(options.splits_from), cat, set(ids))
            continue
        rng = np.random.default_rng([options.seed, zlib.crc32(cat.encode())])
        order = [ids[j] for j in rng.permutation(len(ids))]
        n_train, n_val, _ = _split_counts(len(ids), options.split_fractions)
        cuts = {"train": order[:n_train], "val": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}
        out[cat] = {s: sorted(v) for s, v in cuts.items()}
    return out


def _split_counts(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    counts = [n - int(round(fractions[1] * n)) - int(round(fractions[2] * n)), int(round(fractions[1] * n)), int(round(fractions[2] * n))]
    # a requested val/test split gets at least one object while training keeps two
    for k in (1, 2):
        if fractions[k] > 0 and counts[k] == 0 and counts[0] > 2:
            counts[0] -= 1
            counts[k] += 1
    if counts[0] < 0:  # rounding both up overshot
        counts[2] += counts[0]
        counts[0] = 0
    return counts[0], counts[1], counts[2]


def _given_splits(folder: Path, category: str, ids: set[str]) -> dict[str, list[str]]:
    from onet.data.formats import read_split

    out = {}
    for split in SPLITS:
        path = folder / category / f"{split}.lst"
        if not path.is_file():
            path = folder / f"{split}.lst"
        if not path.is_file():
            raise FileNotFoundError(f"splits_from: neither {folder / category / f'{split}.lst'} nor {folder / f'{split}.lst'} exists")
        out[split] = sorted(set(read_split(path)) & ids)
    return out


def write_splits(output_dir: Path, splits: dict[str, dict[str, list[str]]],
                 options: PreprocessOptions) -> dict[str, dict[str, list[str]]]:
    """Write <category>/{train,val,test}.lst (complete objects only) and metadata.yaml; returns the lists written."""
    from onet.data.formats import write_metadata, write_split

    metadata, written = {}, {}
    for cat, lists in splits.items():
        done = [
            mid for split in SPLITS for mid in lists[split]
            if is_complete(output_dir / cat / mid, options)
        ]
        if not done:
            continue
        done_set = set(done)
        written[cat] = {split: [m for m in lists[split] if m in done_set] for split in SPLITS}
        for split in SPLITS:
            write_split(output_dir / cat / f"{split}.lst", written[cat][split])
        metadata[cat] = {"id": cat, "name": SHAPENET_NAMES.get(cat, cat)}
    if metadata:
        write_metadata(output_dir / "metadata.yaml", metadata)
    return written


def options_from_dict(d: dict) -> PreprocessOptions:
    """PreprocessOptions from a plain dict (e.g. parsed CLI flags); unknown keys are errors."""
    names = {f.name for f in dataclasses.fields(PreprocessOptions)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown preprocess option(s) {unknown}; valid: {sorted(names)}")
    return PreprocessOptions(**d)

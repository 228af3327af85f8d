"""`onet generate`: meshes for the test split, a folder of the user's inputs, or prior samples.

Output layout (inside out_dir/<generation.generation_dir>, or --output):
  meshes/<name>.<fmt>       one mesh per object (name = category/model_id or the input's relative path)
  meshes/<name>.grid.npz    with generation.save_grid: the occupancy-probability grid (see save_grid)
  inputs/<name>.png|.ply    copies of the inputs as the model saw them (test split)
  previews/<name>.png       input image beside a rendering of the mesh
  time_generation.csv       per-object stage timings (seconds)
  failures.csv              inputs that could not be processed: name, path, reason
  warnings.csv              meshes made with a caveat (simplification missed its face target)
  stamp.yaml                the options that made the meshes (onet.utils.stamp)
  config.yaml               the resolved config
Finished meshes are skipped on a rerun, so an interrupted run resumes; a rerun
with other options (checkpoint, threshold, resolution, format, seed, ...) is
refused unless `overwrite` (then the old outputs are cleared first; a shard
clears only its own objects). Every object goes through the per-item rule of
onet.utils.batch: a file that cannot be loaded or meshed is named and skipped,
the others finish. A test-split generation also records its folder and
format in out_dir/last_generation.yaml, where `onet eval` finds it.

Several processes: under `torchrun --nproc_per_node N` each rank takes every
N-th batch of objects (one GPU each, cuda:LOCAL_RANK), and rank 0 merges the
timing and failure tables at the end; `shard=(I, N)` (`--shard I/N`, cluster
job arrays) does the same without communication, and the next unsharded run
merges the tables (it finds every mesh done). A process writes its timing
rows to time_generation.shard<k>of<m>.csv (and a shard's failures to
failures.shard<I>of<N>.csv) until they are merged. Whole batches are split,
so each object is extracted in the same batch as by one process, and the
meshes are the same files.

What is extracted depends on the model's output kind (onet.models.kinds),
dispatched in `_extract_batch`: MISE for occupancy fields, marching cubes on
the predicted grid for voxel models (3D-R2N2), and for point-set models
(PSGN) the points themselves, written as a vertex-only file under meshes/.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import shutil
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from onet.config import save_config
from onet.data.dataset import DataOptions, ShapeDataset
from onet.geometry.mesh_files import export_mesh
from onet.generation.grids import save_grid
from onet.generation.extractor import STAGES as EXTRACT_STAGES, ExtractedMesh, ExtractionBatch, extract_batches
from onet.generation.inputs import describe_suffixes, find_input_files, load_user_input, output_names
from onet.generation.posterior import CODES_FILE, latent_jobs, load_latent_gan, write_codes
from onet.generation.preview import save_preview
from onet.generation.simplify import simplify_mesh
from onet.geometry.voxelize import voxel_isosurface
from onet.models import FIELD, POINTS, VOXELS, load_model
from onet.models.latent import is_latent_gan
from onet.utils.batch import ItemRunner, describe, stops_the_run, write_problems_csv
from onet.utils.device import marching_cubes_workers, resolve_device, resolve_marching_cubes, set_tf32
from onet.utils.errors import ConfigError, UsageError
from onet.utils.precision import resolve_precision
from onet.utils.io import atomic_path, write_text_atomic
from onet.utils.parallel import prefetched
from onet.utils.ranks import Launch, Share, barrier, gather_to_main, launch_info, shutdown
from onet.utils.stamp import OptionsMismatch, check_stamp, write_stamp
from onet.utils.threads import ThreadGovernor, describe_change, thread_governor

LAST_GENERATION = "last_generation.yaml"  # in out_dir: where the latest test-split meshes are
OUTPUTS = ("meshes", "inputs", "previews", "time_generation.csv", "failures.csv", "warnings.csv", "config.yaml",
           CODES_FILE)

STAGES = ("encode", "evaluate", "marching_cubes", "simplify", "refine", "normals")
TIMING_FIELDS = ["name", *STAGES, "total",
                 "n_evaluated", "n_vertices", "n_faces"]


@dataclass
class Job:
    name: str
    inputs: torch.Tensor | None
    loc: np.ndarray = field(default_factory=lambda: np.zeros(3))
    scale: float = 1.0
    z: torch.Tensor | None = None
    source: str = ""  # the input file or dataset folder, named when this object fails


@dataclass
class GenerateSummary:
    out_dir: Path
    written: list[str]
    existing: list[str]
    failures: list[tuple[str, str]]
    timings_path: Path | None
    warnings: list[tuple[str, str]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """1 when any object failed (the batch rule of onet.utils.batch), else 0."""
        return 1 if self.failures else 0


def generate(cfg: dict, *, device: str | None = None, input_dir: str | Path | None = None,
             output_dir: str | Path | None = None, checkpoint: str | Path | None = None,
             mesh_format: str | None = None, samples: int | None = None, interpolate: int | None = None,
             encode: bool = False, between: list[str] | None = None,
             shard: tuple[int, int] | None = None, overwrite: bool = False, redo_if_changed: bool = False,
             progress: bool = True, log=print) -> GenerateSummary:
    """Meshes for the test split, the files of `input_dir`, or `samples` prior draws (see the module docstring).

    Latent modes (onet.generation.posterior): `samples` draws from the VAE's prior or, for a
    latent-GAN config, from its generator; `interpolate` steps between two draws or, with
    `between` (two 'category/model_id' names), between two shapes' posterior means; `encode`
    reconstructs the test split through the VAE's posterior means.

    shard: (I, N) takes every N-th batch from the I-th (cluster job arrays); under
        torchrun the ranks split the work further.
    overwrite: clear the folder's earlier outputs (a shard: its own) and redo them.
    redo_if_changed: when the folder was made with other options, redo it instead of
        refusing (the demo and the threshold sweep, which own their folders).
    Returns a GenerateSummary; its exit_code is 1 when any object failed.
    """
    launch = launch_info()
    threads = torch.get_num_threads()
    try:
        if not launch.is_main:  # one voice: rank 0 reports for all
            progress, log = False, (lambda *a, **k: None)
        return _generate(cfg, launch, shard, device=device, input_dir=input_dir, output_dir=output_dir,
                         checkpoint=checkpoint, mesh_format=mesh_format, samples=samples, interpolate=interpolate,
                         encode=encode, between=between, overwrite=overwrite, redo_if_changed=redo_if_changed,
                         progress=progress, log=log)
    finally:
        torch.set_num_threads(threads)  # generation.cpu_threads is for generation only
        shutdown(launch)


def _generate(cfg: dict, launch: Launch, shard: tuple[int, int] | None, *, device, input_dir, output_dir, checkpoint,
              mesh_format, samples, interpolate, encode, between, overwrite, redo_if_changed, progress,
              log) -> GenerateSummary:
    share = launch.share(shard)
    if (encode or samples or interpolate) and input_dir is not None:
        raise UsageError("--samples/--interpolate/--encode decode latent codes; they take no --input")
    if between is not None and not interpolate:
        raise UsageError("--between A B names the two ends of an interpolation: give --interpolate STEPS too")
    if encode and (samples or interpolate):
        raise UsageError("--encode reconstructs the test split, --samples/--interpolate draw new shapes "
                         "(another folder): run them separately")
    gcfg = cfg["generation"]
    fmt = mesh_format or gcfg["mesh_format"]
    input_type = cfg["data"]["input_type"]
    # usage errors first, before the checkpoint or any data is read
    if input_dir is None and not (samples or interpolate or encode) and input_type is None:
        raise UsageError("this is an unconditional model (data.input_type is null): on the test split every mesh "
                         "would be the same z = 0 shape; draw shapes with --samples N (or --interpolate STEPS), "
                         "or reconstruct the test split through a VAE's posterior with --encode")
    if input_dir is not None and input_type is None:
        raise UsageError("--input needs a conditional model (data.input_type is null); use --samples N")
    if output_dir is None:
        # prior draws and interpolations are different meshes: their own folders, so one after the
        # other needs no --overwrite
        suffix = "_input" if input_dir else "_samples" if samples else "_interpolation" if interpolate else ""
        output_dir = Path(cfg["out_dir"]) / (gcfg["generation_dir"] + suffix)
    out = Path(output_dir)
    if input_dir is not None:
        inside = Path(input_dir).resolve()
        if out.resolve() == inside or inside in out.resolve().parents:
            raise UsageError(f"--output {out} is inside --input {input_dir}: a rerun would read its own meshes "
                             "as new inputs; choose an output folder outside the input folder")

    dev = launch.device(resolve_device(device or cfg["device"]))
    # generation.precision auto -> what this device runs; the saved config.yaml records it
    precision, why = resolve_precision(cfg["generation"]["precision"], dev, key="generation.precision")
    # generation.marching_cubes auto -> the backend for this device, recorded the same way
    marching = resolve_marching_cubes(cfg["generation"]["marching_cubes"], dev)
    cfg = {**cfg, "generation": {**cfg["generation"], "precision": precision, "marching_cubes": marching}}
    gcfg = cfg["generation"]
    log(f"generation precision: {precision} ({why}); marching cubes: {marching}")
    set_tf32(dev, cfg["tf32"])
    # the network's calls in MISE are the steps whose thread count is chosen
    governor = thread_governor(gcfg["cpu_threads"], dev, key="generation.cpu_threads",
                               distributed=launch.distributed, log=log,
                               on_change=lambda change: log(describe_change(change, "ms per 1000 points", 1e6)))
    sampler = None
    if is_latent_gan(cfg):  # the one dispatch: a latent GAN's codes are decoded by its VAE
        model, sampler, ckpt_path = load_latent_gan(cfg, checkpoint, dev)
    else:
        model, ckpt_path = load_model(cfg, checkpoint, dev)
    if model.output_kind != FIELD:  # options only a field has: refused before any input is read
        _check_no_field_options(model, gcfg)
    runner = ItemRunner(log=lambda *a: None)  # failures are reported after the ranks' results are gathered
    codes = None
    if samples or interpolate or encode:
        if model.output_kind != FIELD or model.z_dim == 0:
            raise UsageError(f"{ckpt_path}: --samples/--interpolate/--encode need a model with a latent code "
                             "(model.z_dim > 0)")
        latent = latent_jobs(model, cfg, samples=samples or 0, interpolate_steps=interpolate or 0, between=between,
                             encode=encode, sampler=sampler, device=dev, progress=progress, log=log)
        jobs = [Job(name, None, z=z) for name, z in latent]
        codes = ([j.name for j in jobs], torch.stack([j.z for j in jobs]).numpy())  # written once the folder is ours
        load = None
    elif input_dir is not None:
        root = Path(input_dir)
        files, other = find_input_files(root, input_type)
        others = ", ".join(f"{n} {suffix}" for suffix, n in other.most_common())
        readable = describe_suffixes(input_type)
        if not files:
            raise FileNotFoundError(f"{root}: no input files of type '{input_type}' ({readable}) found"
                                    + (f"; it holds {others}" if others else ""))
        if others:
            log(f"left out {others} file(s) under {root}: this {input_type} model reads {readable}")
        jobs = [Job(name, None, source=str(p)) for name, p in zip(output_names(files, root), files)]
        data = cfg["data"]

        def load(job: Job) -> Job:
            item = load_user_input(Path(job.source), root, input_type, img_size=data["img_size"],
                                   pointcloud_n=data["pointcloud_n"], seed=cfg["seed"])
            return Job(job.name, item.inputs, item.loc, item.scale, source=job.source)
    else:
        data = cfg["data"]
        dataset = ShapeDataset(data["path"], data["test_split"], options=DataOptions.from_config(data),
                               classes=data["classes"], mode="test", seed=cfg["seed"])
        if share.whole or share.index == 0:  # data.skip_bad: listed objects without a folder, reported once
            for problem in dataset.problems:  # "<root>/<cat>/<split>.lst: lists '<id>' but ..."
                lst = Path(problem.split(": ", 1)[0])
                runner.fail(f"{lst.parent.name}/{problem.split(chr(39))[1]}", lst, problem)
        index = {f"{c}/{m}": i for i, (c, m) in enumerate(dataset.items)}
        jobs = [Job(name, None, source=str(dataset.root / name)) for name in index]

        def load(job: Job) -> Job:
            inputs = dataset.load_inputs(dataset.root / job.name, dataset.rng_for(index[job.name]))
            return Job(job.name, inputs, source=job.source)

    def mesh_path(name: str) -> Path:
        return out / "meshes" / f"{name}.{fmt}"

    # the folder is claimed once the work is known (a missing input folder writes nothing); every rank
    # compares the stamp before any of them writes it, so all refuse alike
    options = _stamp_options(cfg, ckpt_path, fmt, input_dir, samples, interpolate, encode, between)
    try:
        # the checkpoint's path is not compared, its digest is: a run folder copied or moved elsewhere
        # resumes its generation (the path still names where the meshes came from)
        same = check_stamp(out, "generate", options, what="meshes", ignore=("checkpoint",)) \
            if not overwrite else False
    except OptionsMismatch as exc:
        if not redo_if_changed:
            raise
        log(f"{out}: made with other options ({', '.join(exc.differences)}); generating again")
        same, overwrite = False, True
    barrier(launch)
    if overwrite and shard is None and launch.is_main:
        _clear_outputs(out)
    elif overwrite and shard is not None:  # a job of an array clears only what it redoes; others may be running
        mine = [j.name for b in share.take([jobs[i:i + gcfg["batch_size"]]
                                           for i in range(0, len(jobs), gcfg["batch_size"])]) for j in b]
        for path in _own_outputs(out, mine, fmt) | {out / f"time_generation.{share.suffix}.csv"}:
            path.unlink(missing_ok=True)
    if launch.is_main:
        if not same:
            write_stamp(out, "generate", options)
        save_config(cfg, out / "config.yaml")
        if codes is not None:
            write_codes(out / CODES_FILE, *codes)
    barrier(launch)

    if share.whole:
        _remove_stale_temporaries(out)
        existing = [j.name for j in jobs if mesh_path(j.name).is_file()]
        todo = [j for j in jobs if not mesh_path(j.name).is_file()]
        batches = [todo[i:i + gcfg["batch_size"]] for i in range(0, len(todo), gcfg["batch_size"])]
        timings_path = out / "time_generation.csv"
        timings = _merge_timing_shards(out)  # tables a sharded run left
    else:
        # whole batches of the full list, so every process agrees on them whatever is done already
        batches = share.take([jobs[i:i + gcfg["batch_size"]] for i in range(0, len(jobs), gcfg["batch_size"])])
        mine = [j.name for b in batches for j in b]
        timings_path = out / f"time_generation.{share.suffix}.csv"
        _remove_stale_temporaries(out, only=_own_outputs(out, mine, fmt) | {timings_path})
        existing = [n for n in mine if mesh_path(n).is_file()]
        batches = [[j for j in b if not mesh_path(j.name).is_file()] for b in batches]
        batches = [b for b in batches if b]
        todo = [j for b in batches for j in b]
        timings = _read_timings(timings_path)
    if existing:
        log(f"{len(existing)} meshes already in {out / 'meshes'}; generating the remaining {len(todo)}")

    written: list[str] = []

    def finish(job: Job, mesh) -> None:
        _write_outputs(out, job, mesh, fmt, input_type if load is not None else None, gcfg,
                       threshold=cfg["test"]["threshold"])
        target = gcfg["simplify_nfaces"]
        if target is not None and len(mesh.faces) > target:
            runner.warn(job.name, job.source or mesh_path(job.name),
                        f"simplification stopped at {len(mesh.faces)} faces, above its target "
                        f"generation.simplify_nfaces={target}")
        written.append(job.name)

    bar = tqdm(total=len(todo), desc="generate", disable=not progress, dynamic_ncols=True)

    def loaded_batches():
        """The batches with their inputs loaded; an input that cannot be loaded is a per-item failure."""
        for batch_jobs in batches:
            batch = []
            for job in batch_jobs:
                if load is None:
                    batch.append(job)
                    continue
                loaded = runner.run(job.name, job.source, load, job)
                if loaded.ok:
                    batch.append(loaded.value)
                else:
                    bar.update(1)
            if batch:
                yield batch

    def write_batch(pairs, n: int) -> None:
        # the batch's timing rows go first: a mesh, written last, marks its object finished,
        # so a killed run never leaves a finished mesh without its row. Once per batch, not
        # per mesh: the whole table is rewritten each time (7.5 ms per mesh at 512 meshes).
        if pairs:
            timings.update((job.name, mesh.timings_row) for job, mesh in pairs)
            _write_timings(timings_path, timings)
        for job, mesh in pairs:
            runner.run(job.name, job.source or mesh_path(job.name), finish, job, mesh)
        bar.update(n)

    # A batch's files are written by one background thread while the device evaluates the next
    # batch: with a GPU, the main process otherwise spent as long encoding and writing PLYs
    # (~10 ms per 100k-face mesh) as the device spent computing (scripts/gpu_check.sh on an H200).
    # One thread keeps the order of the writes; waiting for a batch's writes before handing over
    # the next keeps at most two batches of meshes in memory and re-raises a fault of the run
    # (full disk) before more work is done. Ctrl-C waits for the batch being written.
    writer = ThreadPoolExecutor(1, thread_name_prefix="onet-write")
    writing = None
    try:
        # the next batch's inputs load in a thread while the device works on this one
        for batch, pairs in _extracted(model, prefetched(loaded_batches()), cfg, dev, runner,
                                       launch.local_world_size, governor):
            if writing is not None:
                writing.result()
            writing = writer.submit(write_batch, pairs, len(batch))
        if writing is not None:
            writing.result()
    finally:
        writer.shutdown(wait=True, cancel_futures=True)
    bar.close()

    # every process of a torchrun job hands its results to rank 0, which writes the tables
    gathered = gather_to_main(launch, (written, existing, runner.failures, runner.warnings))
    if not launch.is_main:
        return GenerateSummary(out, written, existing, [(p.name, p.reason) for p in runner.failures],
                               timings_path if timings else None)
    order = {j.name: i for i, j in enumerate(jobs)}  # report in job order, as one process would

    def rank(name: str) -> int:
        return order.get(name, -1)  # listed objects without a folder come first
    written = sorted((n for w, _, _, _ in gathered for n in w), key=rank)
    existing = sorted((n for _, e, _, _ in gathered for n in e), key=rank)
    problems = sorted((f for _, _, fs, _ in gathered for f in fs), key=lambda f: rank(f.name))
    warnings = sorted((w for _, _, _, ws in gathered for w in ws), key=lambda w: rank(w.name))
    failures = [(p.name, p.reason) for p in problems]
    if launch.distributed:
        timings_path = out / "time_generation.csv" if shard is None else timings_path
        timings = _merge_timing_shards(out, shares=None if shard is None else
                                       [Share(shard[0] * launch.world_size + r, shard[1] * launch.world_size)
                                        for r in range(launch.world_size)],
                                       into=timings_path)

    tag = "" if shard is None else f".shard{shard[0]}of{shard[1]}"
    failures_path = out / f"failures{tag}.csv"
    for path, listed in ((failures_path, problems), (out / f"warnings{tag}.csv", warnings)):
        if listed:
            write_problems_csv(path, listed)
        else:  # every earlier failure was retried (it has no mesh) and worked: the old list would mislead
            path.unlink(missing_ok=True)
    for p in problems:
        log(f"skipped {p.name}: {p.reason}")
    for w in warnings:
        log(f"warning: {w.name}: {w.reason}")
    if shard is None:  # this run retried every shard's failures: its list replaces theirs
        for p in [*out.glob("failures.shard*of*.csv"), *out.glob("warnings.shard*of*.csv")]:
            p.unlink(missing_ok=True)
        if input_dir is None and not (samples or interpolate):
            _record_last_generation(cfg, out, fmt, log)
    log(f"wrote {len(written)} meshes to {out / 'meshes'}" + (f"; {len(failures)} inputs failed (see {failures_path.name})"
                                                               if failures else ""))
    if failures and not written and not existing:
        # nothing usable at all is a failed run (exit code 1), like `onet preprocess`
        raise RuntimeError(f"none of the {len(failures)} inputs could be used; reasons in {failures_path}")
    if written:
        _log_timing_summary([timings[n] for n in written if n in timings], log)
    return GenerateSummary(out, written, existing, failures, timings_path if timings else None,
                           [(w.name, w.reason) for w in warnings])


def _extracted(model, batches, cfg: dict, dev: torch.device, runner: ItemRunner, processes_per_node: int = 1,
               governor: ThreadGovernor | None = None):
    """(batch, [(job, mesh), ...]) for each batch of loaded jobs, in order.

    With marching-cubes workers (generation.marching_cubes_workers; by default on CUDA
    only) the CPU marching cubes of batch k runs in worker processes while the device
    evaluates batch k+1 (extract_batches). When that pipeline fails, the batches in
    flight are extracted again one at a time (`_extract_each` names the object that
    breaks) and the pipeline restarts with the next batch.
    """
    gcfg = cfg["generation"]
    workers = marching_cubes_workers(dev, gcfg["marching_cubes_workers"], processes_per_node=processes_per_node)
    if model.output_kind != FIELD or workers == 0 or gcfg["marching_cubes"] != "skimage":
        for batch in batches:
            yield batch, _extract_each(model, batch, cfg, dev, runner, governor)
        return
    batches, in_flight = iter(batches), deque()

    def encoded():
        for batch in batches:
            in_flight.append(batch)
            yield _encode_field_batch(model, batch, cfg, dev, governor)

    while True:
        try:
            for (batch, t_encode), meshes in extract_batches(encoded(), **_extraction_options(cfg, dev, workers)):
                in_flight.popleft()
                yield batch, list(zip(batch, _add_timing_rows(batch, meshes, t_encode)))
            return
        except Exception as exc:
            if stops_the_run(exc):
                raise
        while in_flight:
            batch = in_flight.popleft()
            yield batch, _extract_each(model, batch, cfg, dev, runner, governor)


def _extract_each(model, batch: list[Job], cfg: dict, dev: torch.device, runner: ItemRunner,
                  governor: ThreadGovernor | None = None):
    """(job, mesh) for each job of a batch that could be meshed.

    The batch is extracted together; when that fails, each object is retried
    alone, so the one that breaks is named and the others still get meshes.
    """
    if not batch:
        return []
    try:
        return list(zip(batch, _extract_batch(model, batch, cfg, dev, governor)))
    except Exception as exc:
        if stops_the_run(exc):
            raise
        if len(batch) == 1:
            runner.fail(batch[0].name, batch[0].source, describe(exc))
            return []
    pairs = []
    for job in batch:
        outcome = runner.run(job.name, job.source, _extract_batch, model, [job], cfg, dev, governor)
        if outcome.ok:
            pairs.append((job, outcome.value[0]))
    return pairs


def _stamp_options(cfg: dict, ckpt_path: Path, fmt: str, input_dir, samples, interpolate, encode=False,
                   between=None) -> dict:
    """Everything the meshes depend on (not batch sizes or chunking, which change nothing in them)."""
    gcfg, data = cfg["generation"], cfg["data"]
    mode = ("samples" if samples or interpolate else "encode" if encode
            else "input" if input_dir is not None else "test_split")
    options = {
        "mode": mode,
        "checkpoint": str(Path(ckpt_path).resolve()),
        "checkpoint_sha256": _file_digest(ckpt_path),
        "mesh_format": fmt,
        "threshold": cfg["test"]["threshold"],
        "seed": cfg["seed"],
        "generation": {k: gcfg[k] for k in ("resolution_0", "upsampling_steps", "safety_margin", "simplify_nfaces",
                                             "refinement_step", "vertex_normals", "copy_input", "previews",
                                             "save_grid", "marching_cubes")},
    }
    if gcfg["logit_margin"]:  # only when on: folders made before the key existed keep their stamp
        options["generation"]["logit_margin"] = gcfg["logit_margin"]
    if mode == "input":
        options["input"] = str(Path(input_dir).resolve())
    if mode == "samples":
        options.update(samples=samples or 0, interpolate=interpolate or 0,
                       between=list(between) if between is not None else None)
    if mode == "encode" or between is not None:  # the posterior means: what the latent encoder sees
        options["encoder_points"] = {k: data[k] for k in ("path", "points_subsample", "points_file", "points_jitter")}
    if mode not in ("samples", "encode"):  # how the inputs are turned into what the encoder sees
        keys = {"img": ("img_size", "img_folder"), "pointcloud": ("pointcloud_n", "pointcloud_noise", "pointcloud_file"),
                "voxels": ("voxels_file",)}.get(data["input_type"], ())
        options["inputs"] = {k: data[k] for k in keys if mode == "test_split" or k in ("img_size", "pointcloud_n")}
    return options


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _clear_outputs(out: Path) -> None:
    """Remove what an earlier `onet generate` wrote into `out` (only its own files, shards' tables too)."""
    for name in OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for pattern in ("time_generation.shard*of*.csv", "failures.shard*of*.csv", "warnings.shard*of*.csv"):
        for path in out.glob(pattern):
            path.unlink(missing_ok=True)


def _record_last_generation(cfg: dict, out: Path, fmt: str, log) -> None:
    """out_dir/last_generation.yaml: where `onet eval CONFIG` finds these meshes, whatever --output said
    (relative to out_dir when inside it).

    One entry per (split, generation.generation_dir), so a generation for another split or
    under another generation_dir setting never redirects this one.
    """
    import yaml
    path = Path(cfg["out_dir"]) / LAST_GENERATION
    key = f"{cfg['data']['test_split']}|{cfg['generation']['generation_dir']}"
    try:
        records = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        records = {}
    records = records if isinstance(records, dict) else {}
    # inside out_dir: relative to it, so a run folder copied or moved elsewhere scores its own meshes
    root, folder = Path(cfg["out_dir"]).resolve(), out.resolve()
    where = os.path.relpath(folder, root) if folder.is_relative_to(root) else str(folder)
    records[key] = {"folder": where, "mesh_format": fmt}
    try:
        write_text_atomic(path, yaml.safe_dump(records, sort_keys=True))
    except OSError as exc:  # a read-only out_dir (generating from someone else's checkpoint): eval takes --pred
        log(f"warning: could not record the generation folder in {cfg['out_dir']} ({exc}); "
            f"score it with `onet eval CONFIG --pred {out}`")


def _remove_stale_temporaries(out: Path, only: set[Path] | None = None) -> None:
    """Delete temporaries a killed run left (onet.utils.io names them .<name>.<random>.tmp*).

    They are never mistaken for finished meshes here, but a '.x.ply.abc.tmp.ply'
    would look like a mesh to tools that list the folder. With `only`, just the
    temporaries of those files: other processes may be writing the rest.
    """
    for p in out.rglob(".*.tmp*"):
        if not p.is_file():
            continue
        target = _TEMPORARY.match(p.name)
        if only is None or (target and p.parent / target.group(1) in only):
            p.unlink(missing_ok=True)


_TEMPORARY = re.compile(r"^\.(.+)\.[^.]+\.tmp")  # see onet.utils.io.atomic_path


def _own_outputs(out: Path, names: list[str], fmt: str) -> set[Path]:
    """Every file generating `names` may write (mesh, preview, input copies)."""
    files = set()
    for name in names:
        files.add(out / "meshes" / f"{name}.{fmt}")
        files.add(out / "meshes" / f"{name}.grid.npz")
        files.add(out / "previews" / f"{name}.png")
        files.update((out / "inputs" / name).with_suffix(s) for s in (".png", ".ply", ".off"))
    return files


def _merge_timing_shards(out: Path, shares: list[Share] | None = None, into: Path | None = None) -> dict[str, dict]:
    """Fold the timing tables of sharded runs (all, or those of `shares`) into time_generation.csv
    (or `into`), then delete them; returns the merged rows."""
    into = into or out / "time_generation.csv"
    if shares is None:
        parts = sorted(p for p in out.glob("time_generation.shard*of*.csv") if p != into)
    else:
        parts = [out / f"time_generation.{s.suffix}.csv" for s in shares]
        parts = [p for p in parts if p.is_file() and p != into]
    timings = _read_timings(into)
    for p in parts:
        timings.update(_read_timings(p))
    if parts:
        _write_timings(into, timings)  # written before the parts go: a kill loses no row
        for p in parts:
            p.unlink(missing_ok=True)
    return timings


def _extract_batch(model, batch: list[Job], cfg: dict, dev: torch.device,
                   governor: ThreadGovernor | None = None) -> list[ExtractedMesh]:
    """One ExtractedMesh (with its .timings_row) per job, as the model's output kind asks."""
    if model.output_kind == FIELD:
        return _extract_field_batch(model, batch, cfg, dev, governor)
    return _EXTRACTORS[model.output_kind](model, batch, cfg, dev)


def _extract_field_batch(model, batch: list[Job], cfg: dict, dev: torch.device,
                         governor: ThreadGovernor | None = None) -> list[ExtractedMesh]:
    """MISE and marching cubes for one batch, in this process."""
    [((batch, t_encode), meshes)] = extract_batches([_encode_field_batch(model, batch, cfg, dev, governor)],
                                                    **_extraction_options(cfg, dev, workers=0))
    return _add_timing_rows(batch, meshes, t_encode)


def _extraction_options(cfg: dict, dev: torch.device, workers: int) -> dict:
    gcfg = cfg["generation"]
    return dict(resolution_0=gcfg["resolution_0"], upsampling_steps=gcfg["upsampling_steps"],
                threshold=cfg["test"]["threshold"], box_size=1.1, points_chunk=gcfg["points_chunk"],
                safety_margin=gcfg["safety_margin"], logit_margin=gcfg["logit_margin"],
                simplify_nfaces=gcfg["simplify_nfaces"],
                refinement_step=gcfg["refinement_step"], vertex_normals=gcfg["vertex_normals"],
                keep_grids=gcfg["save_grid"], marching_cubes_backend=gcfg["marching_cubes"],
                workers=workers, device=dev)


def _encode_field_batch(model, batch: list[Job], cfg: dict, dev: torch.device,
                        governor: ThreadGovernor | None = None) -> ExtractionBatch:
    """Encode a batch's inputs for MISE; the payload (jobs, encode seconds per object) comes back
    with the meshes. With a governor, each full-size network call reports its seconds per point."""
    gcfg = cfg["generation"]
    t0 = time.perf_counter()
    with torch.no_grad():
        if batch[0].inputs is not None:
            inputs = torch.stack([j.inputs for j in batch]).to(dev)
            c = model.encode_inputs(inputs)
        else:
            c = model.encode_inputs(None, batch_size=len(batch))
        if batch[0].z is not None:
            z = torch.stack([j.z for j in batch]).to(dev)
        else:
            z = model.get_z_from_prior(len(batch), sample=False, device=dev)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t_encode = (time.perf_counter() - t0) / len(batch)
    field_fns = None
    if gcfg["refinement_step"] > 0 or gcfg["vertex_normals"]:
        field_fns = [model.make_field_fn(c[i:i + 1], z[i:i + 1], precision=gcfg["precision"])
                     for i in range(len(batch))]
    eval_fn = model.make_eval_fn(c, z, precision=gcfg["precision"])
    if governor is not None:
        eval_fn = _governed(eval_fn, governor, min_points=gcfg["points_chunk"] // 2)
    return ExtractionBatch(eval_fn, len(batch), field_fns, payload=(batch, t_encode))


def _governed(eval_fn, governor: ThreadGovernor, min_points: int):
    """eval_fn reporting to `governor` the seconds per point of each call of at least `min_points`
    (MISE's full chunks: the small last chunk of a level costs more per point at any thread count)."""
    def call(points: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        out = eval_fn(points)
        n = points.shape[0] * points.shape[1]
        if n >= min_points:
            governor.step_done((time.perf_counter() - t0) / n)
        return out
    return call


def _encode_observations(model, batch: list[Job], dev: torch.device) -> tuple[torch.Tensor, float]:
    """Codes c (B, c_dim) of the jobs' inputs and the encoding seconds per object."""
    if batch[0].inputs is None:
        raise ValueError(f"a {model.output_kind} model reconstructs from an observation; it has no prior to sample")
    t0 = time.perf_counter()
    with torch.no_grad():
        c = model.encode_inputs(torch.stack([j.inputs for j in batch]).to(dev))
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return c, (time.perf_counter() - t0) / len(batch)


def _check_no_field_options(model, gcfg: dict) -> None:
    """ConfigError for generation options a voxel or point-set model cannot honour."""
    # refinement, vertex normals and the saved MISE grid need an occupancy field
    for key, off in (("refinement_step", 0), ("vertex_normals", "false"), ("save_grid", "false")):
        if gcfg[key]:
            raise ConfigError(f"generation.{key} needs an occupancy-field model; this is a {model.output_kind} "
                              f"model: set generation.{key} to {off}")
    if model.output_kind == POINTS and gcfg["simplify_nfaces"] is not None:
        raise ConfigError("generation.simplify_nfaces needs a mesh; a points model predicts a point set: "
                          "set it to null")


def _extract_voxel_batch(model, batch: list[Job], cfg: dict, dev: torch.device) -> list[ExtractedMesh]:
    """Marching cubes on the predicted 32^3 probabilities at test.threshold (+ optional simplification)."""
    gcfg = cfg["generation"]
    _check_no_field_options(model, gcfg)
    c, t_encode = _encode_observations(model, batch, dev)
    t0 = time.perf_counter()
    with torch.no_grad():
        grids = torch.sigmoid(model.decode(c)).float().cpu().numpy()  # (B, 32, 32, 32)
    t_evaluate = (time.perf_counter() - t0) / len(batch)
    meshes = []
    for grid in grids:
        timings = dict.fromkeys(EXTRACT_STAGES, 0.0)
        timings["evaluate"] = t_evaluate
        t0 = time.perf_counter()
        vertices, faces = voxel_isosurface(grid, cfg["test"]["threshold"])
        timings["marching_cubes"] = time.perf_counter() - t0
        if gcfg["simplify_nfaces"] is not None and len(faces) > 0:
            t0 = time.perf_counter()
            vertices, faces = simplify_mesh(vertices, faces, gcfg["simplify_nfaces"])
            timings["simplify"] = time.perf_counter() - t0
        meshes.append(ExtractedMesh(vertices, faces, None, timings, grid.size))
    return _add_timing_rows(batch, meshes, t_encode)


def _extract_point_batch(model, batch: list[Job], cfg: dict, dev: torch.device) -> list[ExtractedMesh]:
    """The predicted points, as meshes without faces."""
    gcfg = cfg["generation"]
    _check_no_field_options(model, gcfg)
    c, t_encode = _encode_observations(model, batch, dev)
    t0 = time.perf_counter()
    with torch.no_grad():
        points = model.decode(c).float().cpu().numpy()  # (B, N, 3)
    timings = dict.fromkeys(EXTRACT_STAGES, 0.0)
    timings["evaluate"] = (time.perf_counter() - t0) / len(batch)
    meshes = [ExtractedMesh(p, np.zeros((0, 3), np.int64), None, dict(timings), 0) for p in points]
    return _add_timing_rows(batch, meshes, t_encode)


_EXTRACTORS = {FIELD: _extract_field_batch, VOXELS: _extract_voxel_batch, POINTS: _extract_point_batch}


def _add_timing_rows(batch: list[Job], meshes: list[ExtractedMesh], t_encode: float) -> list[ExtractedMesh]:
    for job, mesh in zip(batch, meshes):
        t = dict(mesh.timings)
        row = {"name": job.name, "encode": t_encode}
        for key in STAGES[1:]:
            row[key] = t.get(key, 0.0)
        row["total"] = sum(row[k] for k in STAGES)
        row.update(n_evaluated=mesh.n_evaluated, n_vertices=len(mesh.vertices), n_faces=len(mesh.faces))
        mesh.timings_row = row
    return meshes


def _write_outputs(out: Path, job: Job, mesh, fmt: str, input_type: str | None, gcfg: dict, *,
                   threshold: float) -> None:
    vertices = mesh.vertices * job.scale + job.loc  # back to the input's frame (identity for dataset objects)
    if gcfg["copy_input"] and job.inputs is not None:
        _copy_input(out / "inputs" / job.name, job.inputs, input_type)
    if gcfg["previews"]:
        image = job.inputs if input_type == "img" and job.inputs is not None else None
        save_preview(out / "previews" / f"{job.name}.png", mesh.vertices, mesh.faces, input_image=image)
    if mesh.grid is not None:
        save_grid(out / "meshes" / f"{job.name}.grid.npz", mesh.grid, threshold=threshold,
                  box_size=1.1, loc=job.loc, scale=job.scale)
    # The mesh is written last: its presence marks the object as finished for resuming.
    export_mesh(out / "meshes" / f"{job.name}.{fmt}", vertices, mesh.faces, vertex_normals=mesh.normals)


def _copy_input(stem: Path, inputs: torch.Tensor, input_type: str | None) -> None:
    if input_type == "img":
        from PIL import Image
        arr = (inputs.permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        with atomic_path(stem.with_suffix(".png")) as tmp:
            tmp.write_bytes(buf.getvalue())
    elif input_type == "pointcloud":
        pts = inputs.numpy().astype(np.float32)
        header = (f"ply\nformat ascii 1.0\nelement vertex {len(pts)}\nproperty float x\nproperty float y\n"
                  "property float z\nend_header\n")
        write_text_atomic(stem.with_suffix(".ply"), header + "".join(f"{x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in pts))
    elif input_type == "voxels":
        from onet.geometry.voxelize import voxels_to_mesh
        v, f = voxels_to_mesh(inputs.numpy() > 0.5)
        export_mesh(stem.with_suffix(".off"), v, f)


def _read_timings(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {row["name"]: row for row in csv.DictReader(f) if row.get("name")}


def _write_timings(path: Path, timings: dict[str, dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, TIMING_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for name in sorted(timings):
        writer.writerow({k: (f"{v:.5f}" if isinstance(v, float) else v) for k, v in timings[name].items()})
    write_text_atomic(path, buf.getvalue())


def _log_timing_summary(rows: list[dict], log) -> None:
    keys = [*STAGES, "total"]
    means = {k: float(np.mean([float(r[k]) for r in rows])) for k in keys}
    log("mean seconds per mesh: " + ", ".join(f"{k} {means[k]:.3f}" for k in keys))

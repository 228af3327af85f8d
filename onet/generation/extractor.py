"""The mesh extraction pipeline for batches of objects.

MISE (batched over objects, on the device) -> marching cubes -> optional
simplification -> optional refinement -> optional vertex normals, each stage
timed per object. The network enters only as callables, so this module does
not depend on the model classes: `eval_fn` for the batched no-grad evaluation
and one differentiable `field_fn` per object for refinement and normals.

`extract_batches` overlaps the CPU with the device: with `workers` > 0, marching
cubes and simplification of batch k run in worker processes (the grids reach
them through shared memory) while the device evaluates batch k+1. Processes,
not threads: skimage's marching cubes holds the GIL for its whole run, which
would stall the thread that feeds the GPU. Refinement and normals need the
network, so they run in the calling process. Meshes are the same either way.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from onet.geometry.marching_cubes import marching_cubes, marching_cubes_torch_batch, marching_cubes_warp
from onet.generation.mise import EvalFn, mise_grids, probability_to_logit
from onet.generation.refine import FieldFn, refine_mesh, vertex_normals_from_field
from onet.generation.simplify import simplify_mesh
from onet.utils.parallel import stopping

MARCHING_CUBES = ("skimage", "torch", "warp")
STAGES = ("evaluate", "marching_cubes", "simplify", "refine", "normals")


@dataclass
class ExtractedMesh:
    """vertices (V, 3) float32 world coordinates; faces (F, 3) int64, outward
    winding; normals (V, 3) float32 or None when not requested; timings:
    seconds per stage in STAGES for this object (the batched evaluation is
    divided evenly over the batch; skipped stages are 0.0); n_evaluated:
    network evaluations spent on this object; grid: the (R+1, R+1, R+1) float32
    logit grid marching cubes read (onet.geometry.grid convention), only when
    asked for with keep_grids."""

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray | None
    timings: dict[str, float] = field(default_factory=dict)
    n_evaluated: int = 0
    grid: np.ndarray | None = None


@dataclass
class ExtractionBatch:
    """One batch for `extract_batches`.

    eval_fn: points (B, N, 3) -> logits (B, N), no grad needed (see mise()).
    batch_size: B.
    field_fns: B callables points (1, N, 3) -> logits (1, N), differentiable w.r.t.
        the points; required when refinement_step > 0 or vertex_normals.
    payload: anything; handed back with the batch's meshes (e.g. the jobs).
    """

    eval_fn: EvalFn
    batch_size: int
    field_fns: Sequence[FieldFn] | None = None
    payload: Any = None


def extract_meshes(
    eval_fn: EvalFn,
    batch_size: int,
    *,
    field_fns: Sequence[FieldFn] | None = None,
    **options,
) -> list[ExtractedMesh]:
    """Extract one mesh per object of one batch (in this process; see extract_batches for options).

    eval_fn: points (B, N, 3) -> logits (B, N), no grad needed (see mise()).
    field_fns: B callables points (1, N, 3) -> logits (1, N), differentiable
        w.r.t. the points; required when refinement_step > 0 or vertex_normals.
    Returns B ExtractedMesh, in batch order.
    """
    ((_, meshes),) = extract_batches([ExtractionBatch(eval_fn, batch_size, field_fns)], workers=0, **options)
    return meshes


def extract_batches(
    batches: Iterable[ExtractionBatch],
    *,
    resolution_0: int = 32,
    upsampling_steps: int = 2,
    threshold: float = 0.2,
    box_size: float = 1.1,
    points_chunk: int = 100_000,
    safety_margin: bool = False,
    logit_margin: float = 0.0,
    simplify_nfaces: int | None = None,
    refinement_step: int = 0,
    vertex_normals: bool = False,
    keep_grids: bool = False,
    marching_cubes_backend: str = "skimage",
    workers: int = 0,
    device: str | torch.device = "cpu",
) -> Iterator[tuple[Any, list[ExtractedMesh]]]:
    """Extract meshes batch by batch; yields (payload, meshes of the batch in batch order).

    simplify_nfaces: decimate to at most this many faces (None: keep all).
    refinement_step: number of refinement steps (0: no refinement).
    keep_grids: return each object's MISE logit grid in ExtractedMesh.grid.
    marching_cubes_backend: "skimage" (CPU), "torch" (torch on `device`, the whole batch
        at once) or "warp" (NVIDIA Warp on `device`, an optional extra); the same vertices,
        possibly other triangles, in another order.
    workers: processes for CPU marching cubes and simplification; with workers > 0
        a batch is yielded once the device has evaluated the next one (the CPU work
        of one batch overlaps the device work of the next). 0: all in this process.
    Other options as in mise(). `batches` is consumed lazily, one batch ahead.
    """
    level = probability_to_logit(threshold)
    if isinstance(refinement_step, bool) or not isinstance(refinement_step, (int, np.integer)) or refinement_step < 0:
        raise ValueError(f"refinement_step must be a non-negative integer, got {refinement_step!r}")
    if simplify_nfaces is not None and (
        isinstance(simplify_nfaces, bool) or not isinstance(simplify_nfaces, (int, np.integer)) or simplify_nfaces < 4
    ):
        raise ValueError(f"simplify_nfaces must be None or an integer >= 4, got {simplify_nfaces!r}")
    if marching_cubes_backend not in MARCHING_CUBES:
        raise ValueError(f"marching_cubes_backend must be one of {', '.join(MARCHING_CUBES)}, "
                         f"got {marching_cubes_backend!r}")
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
        raise ValueError(f"workers must be a non-negative integer, got {workers!r}")
    mise_options = dict(resolution_0=resolution_0, upsampling_steps=upsampling_steps, threshold=threshold,
                        box_size=box_size, points_chunk=points_chunk, safety_margin=safety_margin,
                        logit_margin=logit_margin, device=device)
    surface_options = dict(level=level, box_size=box_size, simplify_nfaces=simplify_nfaces)
    post = dict(threshold=threshold, refinement_step=refinement_step, vertex_normals=vertex_normals,
                points_chunk=points_chunk, device=device)
    use_pool = workers > 0 and marching_cubes_backend == "skimage"
    pool = _worker_pool(workers) if use_pool else None
    pending = None
    # on an error, Ctrl-C or the caller closing the generator, the workers are stopped at once
    with stopping(pool) if pool is not None else contextlib.nullcontext():
        for batch in batches:
            _check_field_fns(batch, refinement_step > 0 or vertex_normals)
            start = time.perf_counter()
            grids = mise_grids(batch.eval_fn, batch.batch_size, **mise_options)
            counts = grids.n_evaluated.tolist()  # waits for the device: the evaluation time is real
            kept = None
            if marching_cubes_backend in ("torch", "warp"):  # on the grids' device
                evaluate_time = (time.perf_counter() - start) / batch.batch_size
                if marching_cubes_backend == "torch":  # the whole batch in one pass
                    surfaces = [_done(s) for s in _surfaces_torch(grids.values, **surface_options)]
                else:
                    surfaces = [_done(_surface(grids.values[b], warp=True, **surface_options))
                                for b in range(batch.batch_size)]
                if keep_grids:
                    kept = list(grids.values.cpu().numpy())
            elif pool is not None:
                # one device-to-host copy of the batch, straight into shared memory the workers map
                host = torch.empty(grids.values.shape, dtype=torch.float32).share_memory_()
                host.copy_(grids.values)
                evaluate_time = (time.perf_counter() - start) / batch.batch_size
                # one task per worker, not per object: each submission passes the shared
                # tensor's file descriptor over a socket (about 14 ms of the main process's
                # time per task, measured with cProfile on an H200 machine)
                chunks = np.array_split(np.arange(batch.batch_size), min(workers, batch.batch_size))
                parts = [pool.submit(_surfaces_of_shared, host, chunk.tolist(), **surface_options)
                         for chunk in chunks]
                surfaces = [_Part(part, k) for part, chunk in zip(parts, chunks) for k in range(len(chunk))]
                if keep_grids:
                    kept = list(host.numpy())
            else:
                values = grids.values.cpu().numpy()
                evaluate_time = (time.perf_counter() - start) / batch.batch_size
                surfaces = [_done(_surface(values[b], **surface_options)) for b in range(batch.batch_size)]
                if keep_grids:
                    kept = list(values)
            del grids
            current = (batch, surfaces, counts, evaluate_time, kept)
            if pool is None:
                yield _finish(*current, **post)
                continue
            if pending is not None:
                yield _finish(*pending, **post)
            pending = current
        if pending is not None:
            yield _finish(*pending, **post)


def _check_field_fns(batch: ExtractionBatch, needs_field: bool) -> None:
    if needs_field and (batch.field_fns is None or len(batch.field_fns) != batch.batch_size):
        got = "None" if batch.field_fns is None else f"{len(batch.field_fns)} callables"
        raise ValueError(
            f"field_fns must hold one differentiable field per object ({batch.batch_size}) when "
            f"refinement_step > 0 or vertex_normals is set, got {got}"
        )


def _worker_pool(workers: int) -> ProcessPoolExecutor:
    # spawn, not fork: the parent may hold a CUDA context, which a forked child must not inherit
    ctx = torch.multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=torch.set_num_threads, initargs=(1,))
    pool.submit(int)  # starts the workers now: their imports overlap the first batch's evaluation
    return pool


def _done(value) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


def _surface(values, *, level: float, box_size: float, simplify_nfaces: int | None, warp: bool = False):
    """Marching cubes (+ simplification) of one grid -> (vertices, faces, seconds mc, seconds simplify)."""
    start = time.perf_counter()
    if warp:
        vertices, faces = marching_cubes_warp(values, level, box_size=box_size)
    else:
        vertices, faces = marching_cubes(values, level, box_size=box_size)
    return _simplified(vertices, faces, time.perf_counter() - start, simplify_nfaces)


def _surfaces_torch(values: torch.Tensor, *, level: float, box_size: float, simplify_nfaces: int | None):
    """_surface of each grid of a batch (B, S, S, S), marching cubes by torch on the grids' device."""
    start = time.perf_counter()
    meshes = marching_cubes_torch_batch(values, level, box_size=box_size)
    t_mc = (time.perf_counter() - start) / max(1, len(meshes))  # one pass for the batch: its share
    return [_simplified(vertices, faces, t_mc, simplify_nfaces) for vertices, faces in meshes]


def _simplified(vertices, faces, t_mc: float, simplify_nfaces: int | None):
    t_simplify = 0.0
    if simplify_nfaces is not None and len(faces) > 0:
        start = time.perf_counter()
        vertices, faces = simplify_mesh(vertices, faces, simplify_nfaces)
        t_simplify = time.perf_counter() - start
    return vertices, faces, t_mc, t_simplify


def _surfaces_of_shared(host: torch.Tensor, objects: list[int], **options) -> list:
    """Worker side: the surfaces of `objects` of a batch grid in shared memory (B, S, S, S)."""
    return [_surface(host[b].numpy(), **options) for b in objects]


class _Part:
    """Future-like view of result k of a worker task that returns a list."""

    def __init__(self, future: Future, k: int):
        self.future, self.k = future, k

    def result(self):
        return self.future.result()[self.k]


def _finish(batch: ExtractionBatch, surfaces: list, counts: list[int], evaluate_time: float,
            kept: list[np.ndarray] | None, *,
            threshold: float, refinement_step: int, vertex_normals: bool, points_chunk: int,
            device) -> tuple[Any, list[ExtractedMesh]]:
    """Collect the batch's surfaces; refine and add normals (on the device, in this process)."""
    meshes = []
    for b, future in enumerate(surfaces):
        vertices, faces, t_mc, t_simplify = future.result()
        timings = dict.fromkeys(STAGES, 0.0)
        timings.update(evaluate=evaluate_time, marching_cubes=t_mc, simplify=t_simplify)
        if refinement_step > 0 and len(faces) > 0:
            start = time.perf_counter()
            vertices = refine_mesh(vertices, faces, batch.field_fns[b], threshold=threshold,
                                   n_steps=refinement_step, device=device)
            timings["refine"] = time.perf_counter() - start
        normals = None
        if vertex_normals:
            start = time.perf_counter()
            normals = vertex_normals_from_field(vertices, batch.field_fns[b], points_chunk=points_chunk,
                                                device=device)
            timings["normals"] = time.perf_counter() - start
        meshes.append(ExtractedMesh(vertices, faces, normals, timings, counts[b],
                                    None if kept is None else kept[b]))
    return batch.payload, meshes

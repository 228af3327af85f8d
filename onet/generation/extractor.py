"""The mesh extraction pipeline for a batch of objects.

MISE (batched over objects) -> marching cubes -> optional simplification ->
optional refinement -> optional vertex normals, each stage timed per object.
The network enters only as callables, so this module does not depend on the
model classes: `eval_fn` for the batched no-grad evaluation and one
differentiable `field_fn` per object for refinement and normals.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from onet.geometry.marching_cubes import marching_cubes
from onet.generation.mise import EvalFn, mise, probability_to_logit
from onet.generation.refine import FieldFn, refine_mesh, vertex_normals_from_field
from onet.generation.simplify import simplify_mesh

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


def extract_meshes(
    eval_fn: EvalFn,
    batch_size: int,
    *,
    field_fns: Sequence[FieldFn] | None = None,
    resolution_0: int = 32,
    upsampling_steps: int = 2,
    threshold: float = 0.2,
    box_size: float = 1.1,
    points_chunk: int = 100_000,
    safety_margin: bool = False,
    simplify_nfaces: int | None = None,
    refinement_step: int = 0,
    vertex_normals: bool = False,
    keep_grids: bool = False,
    device: str | torch.device = "cpu",
) -> list[ExtractedMesh]:
    """Extract one mesh per object of a batch.

    eval_fn: points (B, N, 3) -> logits (B, N), no grad needed (see mise()).
    field_fns: B callables points (1, N, 3) -> logits (1, N), differentiable
        w.r.t. the points; required when refinement_step > 0 or vertex_normals.
    simplify_nfaces: decimate to at most this many faces (None: keep all).
    refinement_step: number of refinement steps (0: no refinement).
    keep_grids: return each object's MISE logit grid in ExtractedMesh.grid.
    Other options as in mise(). Returns B ExtractedMesh, in batch order.
    """
    level = probability_to_logit(threshold)
    if isinstance(refinement_step, bool) or not isinstance(refinement_step, (int, np.integer)) or refinement_step < 0:
        raise ValueError(f"refinement_step must be a non-negative integer, got {refinement_step!r}")
    if simplify_nfaces is not None and (
        isinstance(simplify_nfaces, bool) or not isinstance(simplify_nfaces, (int, np.integer)) or simplify_nfaces < 4
    ):
        raise ValueError(f"simplify_nfaces must be None or an integer >= 4, got {simplify_nfaces!r}")
    needs_field = refinement_step > 0 or vertex_normals
    if needs_field:
        if field_fns is None or len(field_fns) != batch_size:
            got = "None" if field_fns is None else f"{len(field_fns)} callables"
            raise ValueError(
                f"field_fns must hold one differentiable field per object ({batch_size}) when "
                f"refinement_step > 0 or vertex_normals is set, got {got}"
            )

    start = time.perf_counter()
    grids = mise(
        eval_fn,
        batch_size,
        resolution_0=resolution_0,
        upsampling_steps=upsampling_steps,
        threshold=threshold,
        box_size=box_size,
        points_chunk=points_chunk,
        safety_margin=safety_margin,
        device=device,
    )
    evaluate_time = (time.perf_counter() - start) / batch_size

    meshes = []
    for b, grid in enumerate(grids):
        timings = dict.fromkeys(STAGES, 0.0)
        timings["evaluate"] = evaluate_time

        start = time.perf_counter()
        vertices, faces = marching_cubes(grid.values, level, box_size=box_size)
        timings["marching_cubes"] = time.perf_counter() - start

        if simplify_nfaces is not None and len(faces) > 0:
            start = time.perf_counter()
            vertices, faces = simplify_mesh(vertices, faces, simplify_nfaces)
            timings["simplify"] = time.perf_counter() - start

        if refinement_step > 0 and len(faces) > 0:
            start = time.perf_counter()
            vertices = refine_mesh(
                vertices, faces, field_fns[b], threshold=threshold, n_steps=refinement_step, device=device
            )
            timings["refine"] = time.perf_counter() - start

        normals = None
        if vertex_normals:
            start = time.perf_counter()
            normals = vertex_normals_from_field(vertices, field_fns[b], points_chunk=points_chunk, device=device)
            timings["normals"] = time.perf_counter() - start

        meshes.append(ExtractedMesh(vertices, faces, normals, timings, grid.n_evaluated,
                                    grid.values if keep_grids else None))
    return meshes

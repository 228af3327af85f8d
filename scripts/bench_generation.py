"""Benchmark mesh extraction: MISE against dense evaluation.

    python scripts/bench_generation.py                 # 32^3, 64^3, 128^3
    python scripts/bench_generation.py --full          # also 256^3 (dense 256^3 of the model takes minutes)
    python scripts/bench_generation.py --skip-model    # analytic field only
    python scripts/bench_generation.py --pipeline      # + simplify / refine stage breakdown at 128^3
    python scripts/bench_generation.py --memory 256 --memory-field img   # peak RSS of one 256^3 extraction
    python scripts/bench_generation.py --marching-cubes   # the marching-cubes backends on MISE grids

Fields:
  chair         an analytic chair (seat, back, four legs as boxes): logits =
                logit(0.2) - 20 * sdf. Nearly free to evaluate, so its timings
                show the overhead of MISE and marching cubes themselves.
  img-256       the full single-image model of configs/img.yaml (ResNet-18
                encoder, c_dim 256, CBN-ResNet decoder hidden 256), random
                weights, eval mode, through model.make_eval_fn.
  img-128       the demo-size decoder (hidden 128, c_dim 128, encoder width 32).
With random weights the decoder's level set is arbitrary (often empty or
everywhere), so the model fields evaluate the network and add its logits,
scaled to a standard deviation of 0.1, to the chair's logits: the surface is
the chair's, the evaluated point counts and costs are the network's.

Columns: frac = network evaluations of MISE / dense points; ms/mesh = evaluate
+ marching cubes per object; GFLOP/s counts the decoder's linear layers only,
against a fp32 (4096 x 256) @ (256 x 256) matmul measured in the same run;
peak RSS is the process maximum so far (ru_maxrss), so the 256^3 row bounds
the memory of everything up to it. Timings are best of --repeats; nothing is
asserted.
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from onet.generation.extractor import extract_meshes  # noqa: E402
from onet.generation.mise import mise, probability_to_logit  # noqa: E402
from onet.geometry.marching_cubes import marching_cubes  # noqa: E402

THRESHOLD = 0.2
LEVEL = probability_to_logit(THRESHOLD)

# (centre, half extents) of the chair's boxes, y up, inside the unit cube
CHAIR_BOXES = [
    ((0.0, -0.05, 0.0), (0.30, 0.04, 0.30)),  # seat
    ((0.0, 0.22, -0.27), (0.30, 0.25, 0.03)),  # back
] + [((sx * 0.26, -0.29, sz * 0.26), (0.03, 0.205, 0.03)) for sx in (-1, 1) for sz in (-1, 1)]  # legs


def chair_sdf(p: torch.Tensor) -> torch.Tensor:
    """Signed distance (positive outside) to the union of the chair's boxes; p (..., 3)."""
    d = None
    for centre, half in CHAIR_BOXES:
        q = (p - p.new_tensor(centre)).abs() - p.new_tensor(half)
        box = q.clamp_min(0).norm(dim=-1) + q.max(dim=-1).values.clamp_max(0)
        d = box if d is None else torch.minimum(d, box)
    return d


def chair_logits(p: torch.Tensor) -> torch.Tensor:
    return LEVEL - 20.0 * chair_sdf(p)


def chair_eval_fn(points: torch.Tensor) -> torch.Tensor:
    """points (B, N, 3) -> logits (B, N): the same chair for every object."""
    return chair_logits(points)


def matmul_peak_gflops(repeats: int) -> float:
    a, w, out = torch.randn(4096, 256), torch.randn(256, 256), torch.empty(4096, 256)
    best = float("inf")
    for _ in range(max(repeats, 3)):
        start = time.perf_counter()
        for _ in range(50):
            torch.mm(a, w, out=out)
        best = min(best, (time.perf_counter() - start) / 50)
    return 2 * 4096 * 256 * 256 / best / 1e9


def decoder_flops_per_point(hidden: int, n_blocks: int = 5, dim: int = 3) -> int:
    """2 x multiply-adds of fc_p, the 2 * n_blocks hidden linears and fc_out (CBN is folded)."""
    return 2 * (dim * hidden + 2 * n_blocks * hidden * hidden + hidden)


def build_model_field(hidden: int, c_dim: int, width: int, batch_size: int, device: str = "cpu"):
    """(eval_fn for B objects, eval_fn and differentiable field_fn for one object) of a
    random-weight image model plus the chair, on `device`, and the model (for the decoder's
    own field fns), or None with a message."""
    try:
        from onet.models import build_model

        model = build_model(
            {
                "encoder": "resnet18",
                "encoder_kwargs": {"pretrained": False, "width": width},
                "decoder": "cbn_resnet",
                "decoder_kwargs": {"hidden_size": hidden, "n_blocks": 5},
                "c_dim": c_dim,
            }
        )
        if not hasattr(model, "make_eval_fn"):
            raise AttributeError("OccupancyNetwork.make_eval_fn is missing")
    except (ImportError, AttributeError, ValueError, TypeError) as e:
        print(f"skipping the image model (hidden {hidden}): {e}")
        return None
    torch.manual_seed(0)
    model.to(device).eval()
    with torch.no_grad():
        c = model.encode_inputs(torch.rand(batch_size, 3, 224, 224, device=device))  # (B, c_dim)
    net_fn = model.make_eval_fn(c)
    with torch.no_grad():
        sample = net_fn(torch.rand(batch_size, 4096, 3, device=device) * 1.1 - 0.55)
    scale = 0.1 / max(float(sample.std()), 1e-6)

    def eval_fn(points: torch.Tensor) -> torch.Tensor:
        return chair_logits(points) + scale * net_fn(points)

    # single-object versions for the pipeline breakdown; field_fn is differentiable
    net_fn_1 = model.make_eval_fn(c[:1])

    def eval_fn_1(points: torch.Tensor) -> torch.Tensor:
        return chair_logits(points) + scale * net_fn_1(points)

    net_field_1 = model.make_field_fn(c[:1])  # the differentiable folded decoder `onet generate` uses

    def field_fn_1(points: torch.Tensor) -> torch.Tensor:
        return chair_logits(points) + scale * net_field_1(points)

    return eval_fn, eval_fn_1, field_fn_1, (model, c[:1])


def best_of(repeats: int, fn):
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB. VmHWM where Linux has it: ru_maxrss
    survives exec, so a fresh child would report its parent's peak at fork time."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def bench_field(name, eval_fn, flops_per_point, resolutions, args, peak):
    B = args.batch_size
    rows = []
    for res in resolutions:
        steps = int(round(math.log2(res / args.resolution_0))) if res > args.resolution_0 else 0
        res_0 = res // 2**steps
        options = dict(resolution_0=res_0, upsampling_steps=steps, threshold=THRESHOLD,
                       points_chunk=args.points_chunk, safety_margin=args.safety_margin,
                       logit_margin=args.logit_margin)

        t_mise, meshes = best_of(args.repeats, lambda: extract_meshes(eval_fn, B, **options))
        mesh = meshes[0]
        t_eval = mesh.timings["evaluate"]
        t_mc = mesh.timings["marching_cubes"]

        if res <= args.max_dense:
            def dense():
                start = time.perf_counter()
                grids = mise(eval_fn, B, resolution_0=res, upsampling_steps=0, threshold=THRESHOLD,
                             points_chunk=args.points_chunk)
                t_eval_dense = (time.perf_counter() - start) / B
                start = time.perf_counter()
                marching_cubes(grids[0].values, LEVEL)
                return t_eval_dense, time.perf_counter() - start

            _, (t_eval_dense, t_mc_dense) = best_of(args.repeats, dense)
            dense_ms = 1e3 * (t_eval_dense + t_mc_dense)
        else:
            t_eval_dense, dense_ms = None, None

        n_dense = (res + 1) ** 3
        mise_ms = 1e3 * (t_eval + t_mc)
        row = {
            "field": name, "R": res, "steps": steps, "frac": mesh.n_evaluated / n_dense,
            "mise_ms": mise_ms, "eval_ms": 1e3 * t_eval, "mc_ms": 1e3 * t_mc,
            "dense_ms": dense_ms, "faces": len(mesh.faces), "rss": peak_rss_mb(),
        }
        row["ratio"] = mise_ms / dense_ms if dense_ms else None
        if flops_per_point:
            row["gflops"] = mesh.n_evaluated * flops_per_point / t_eval / 1e9
            row["gflops_dense"] = n_dense * flops_per_point / t_eval_dense / 1e9 if t_eval_dense else None
        rows.append(row)
        print_row(row, peak)
    return rows


HEADER = (f"{'field':<9} {'R':>4} {'frac':>6} {'MISE ms':>9} {'(eval':>8} {'MC)':>7} {'dense ms':>9} "
          f"{'MISE/dense':>10} {'GFLOP/s':>8} {'dense':>7} {'%peak':>6} {'faces':>7} {'RSS MB':>7}")


def fmt(value, spec, width):
    return f"{value:{width}{spec}}" if value is not None else f"{'-':>{width}}"


def print_row(row, peak):
    gf = row.get("gflops")
    print(
        f"{row['field']:<9} {row['R']:>4} {row['frac']:>6.3f} {row['mise_ms']:>9.1f} {row['eval_ms']:>8.1f} "
        f"{row['mc_ms']:>7.1f} {fmt(row['dense_ms'], '.1f', 9)} {fmt(row['ratio'], '.3f', 10)} "
        f"{fmt(gf, '.1f', 8)} {fmt(row.get('gflops_dense'), '.1f', 7)} "
        f"{fmt(100 * gf / peak if gf else None, '.0f', 6)} {row['faces']:>7} {row['rss']:>7.0f}",
        flush=True,
    )


def bench_pipeline(name, eval_fn, field_fn, points_chunk: int = 100_000, refinement_step: int = 30):
    """Stage breakdown at 128^3 (one object) with simplification to 5000 faces,
    `refinement_step` refinement steps and vertex normals; returns the ExtractedMesh
    (timings: seconds per stage)."""
    meshes = extract_meshes(
        eval_fn, 1, field_fns=[field_fn], resolution_0=32, upsampling_steps=2, threshold=THRESHOLD,
        points_chunk=points_chunk, simplify_nfaces=5000, refinement_step=refinement_step, vertex_normals=True,
    )
    t = meshes[0].timings
    stages = "  ".join(f"{k} {1e3 * v:.0f}" for k, v in t.items())
    print(f"{name:<9} 128^3 full pipeline, ms: {stages}  total {1e3 * sum(t.values()):.0f}")
    return meshes[0]


def _fig(stage: str, figure: str, value, unit: str, note: str = "") -> dict:
    return {"stage": stage, "figure": figure, "value": value, "unit": unit, "note": note}


def memory_at(resolution: int, field: str) -> dict:
    """Peak RSS of this process over one MISE extraction (from 32^3) at resolution^3.

    Meant for a fresh process (`--memory R`): ru_maxrss is the process maximum,
    so anything run before would hide the extraction's own peak."""
    eval_fn = chair_eval_fn
    if field == "img":
        fields = build_model_field(256, 256, 64, 1)
        if fields is None:
            raise SystemExit("the image model is not available")
        eval_fn = fields[0]
    eval_fn(torch.zeros(1, 1000, 3))
    before = peak_rss_mb()
    steps = int(round(math.log2(resolution / 32)))
    start = time.perf_counter()
    mesh = extract_meshes(eval_fn, 1, resolution_0=32, upsampling_steps=steps, threshold=THRESHOLD)[0]
    return {"field": field, "R": 32 * 2**steps, "seconds": time.perf_counter() - start,
            "rss_before_mb": before, "peak_rss_mb": peak_rss_mb(), "n_evaluated": mesh.n_evaluated,
            "faces": len(mesh.faces)}


def _memory_in_subprocess(resolution: int, field: str) -> dict:
    import json
    import subprocess

    out = subprocess.run([sys.executable, __file__, "--memory", str(resolution), "--memory-field", field],
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def gpu_meshes_per_second(batch: int, device: str, repeats: int) -> tuple[float, float]:
    """(meshes/s, peak GPU MB) of batched MISE + marching cubes at 128^3 for the full image
    model on `device` (images already encoded; no simplification or refinement)."""
    fields = build_model_field(256, 256, 64, batch, device)
    if fields is None:
        raise RuntimeError("the image model is not available")
    eval_fn = fields[0]
    # the points per network call of `onet generate` (generation.points_chunk), not a bigger
    # one: a larger chunk would overstate what users get
    from onet.config import load_defaults

    points_chunk = load_defaults()["generation"]["points_chunk"]
    from onet.utils.device import resolve_marching_cubes

    options = dict(resolution_0=32, upsampling_steps=2, threshold=THRESHOLD, points_chunk=points_chunk, device=device,
                   marching_cubes_backend=resolve_marching_cubes("auto", device))  # as `onet generate`
    extract_meshes(eval_fn, batch, **options)  # warm-up (kernels, allocator)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    best, _ = best_of(repeats, lambda: extract_meshes(eval_fn, batch, **options))
    return batch / best, torch.cuda.max_memory_allocated() / 2**20


def bench_marching_cubes(device: str, batch_sizes=(1, 8, 32), resolution: int = 128, repeats: int = 3) -> None:
    """Table: ms per mesh of each marching-cubes backend on the chair's MISE grids (B, S, S, S) on
    `device`, and how far each backend's vertices are from skimage's (the same edge crossings)."""
    from scipy.spatial import cKDTree

    from onet.generation.mise import mise_grids
    from onet.geometry.marching_cubes import (
        marching_cubes_torch_batch,
        marching_cubes_warp,
    )

    steps = int(round(math.log2(resolution / 32)))
    print(f"marching cubes at {resolution}^3 on {device}, the chair's MISE grid, best of {repeats}; "
          "ms/mesh includes the copy of the mesh to the host")
    print(f"{'backend':<20} {'B':>3} {'ms/mesh':>8} {'faces':>7} {'vertex dist to skimage':>23}")
    for B in batch_sizes:
        grids = mise_grids(chair_eval_fn, B, resolution_0=32, upsampling_steps=steps, threshold=THRESHOLD,
                           device=device).values
        host = grids.cpu().numpy()

        def sync():
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize()

        runs = {"skimage (CPU, 1 proc)": lambda grids, host: [marching_cubes(g, LEVEL) for g in host],
                "torch, batch": lambda grids, host: marching_cubes_torch_batch(grids, LEVEL)}
        try:
            import warp  # noqa: F401
            runs["warp"] = lambda grids, host: [marching_cubes_warp(g, LEVEL) for g in grids]
        except ImportError:
            pass
        ref = None
        for name, fn in runs.items():
            def timed(fn=fn, grids=grids, host=host):
                meshes = fn(grids, host)
                sync()
                return meshes

            timed()  # warm-up: tables, kernels
            t, meshes = best_of(repeats, timed)
            if ref is None:
                ref = meshes
            dist = max(float(cKDTree(v).query(r[0])[0].max()) for (v, _), r in zip(meshes, ref))
            print(f"{name:<20} {B:>3} {1e3 * t / B:>8.1f} {len(meshes[0][1]):>7} {dist:>23.1e}", flush=True)


def run(quick: bool = False, device: str = "cpu") -> list[dict]:
    """Figures of mesh extraction, refinement and extraction memory, as rows
    {stage, figure, value, unit, note}. CPU figures always; GPU figures when
    `device` is "cuda". quick: one repeat, dense 128^3 time extrapolated from
    dense 64^3, and the 256^3 memory measured on the analytic field."""
    repeats = 1 if quick else 2
    rows = []
    extract_meshes(chair_eval_fn, 1, resolution_0=16, upsampling_steps=1)  # warm-up
    peak = matmul_peak_gflops(repeats)
    rows.append(_fig("extraction", "fp32 matmul peak, (4096x256) @ (256x256)", peak, "GFLOP/s"))
    mise_128 = dict(resolution_0=32, upsampling_steps=2, threshold=THRESHOLD)

    t, meshes = best_of(repeats, lambda: extract_meshes(chair_eval_fn, 1, **mise_128))
    rows.append(_fig("extraction", "MISE ms/mesh at 128^3, analytic chair (MISE + MC overhead)", 1e3 * t, "ms"))

    fields = build_model_field(256, 256, 64, 1)
    if fields is None:
        rows.append(_fig("extraction", "MISE ms/mesh at 128^3, full image decoder", None, "ms", "model unavailable"))
    else:
        eval_fn, eval_fn_1, field_fn_1, (model, c_1) = fields
        eval_fn(torch.zeros(1, 10_000, 3))  # warm-up
        flops = decoder_flops_per_point(256)
        # refinement and normals through the decoder's own folded field fn, as `onet generate`
        # runs them (piecewise linear: no double backprop); the chair+decoder field would
        # take the general double-backprop path. The cost per step does not depend on where
        # the random decoder's level set pulls the vertices.
        field_fn_1 = model.make_field_fn(c_1)
        # the whole pipeline at 128^3 (quick: 3 refinement steps; the refinement rows time 30
        # below), and in quick mode its MISE run stands for the MISE figures too
        refine_steps = 3 if quick else 30
        piped = bench_pipeline("img-256", eval_fn_1, field_fn_1, refinement_step=refine_steps)
        runs = [piped] if quick else [extract_meshes(eval_fn, 1, **mise_128)[0] for _ in range(repeats)]
        mesh = min(runs, key=lambda m: m.timings["evaluate"] + m.timings["marching_cubes"])
        t_eval, t_mc = mesh.timings["evaluate"], mesh.timings["marching_cubes"]
        n_dense = 129**3
        # dense: the same chunked evaluation as MISE with no refinement (upsampling_steps=0), with the
        # matmul peak timed right before and after it on a possibly shared machine (the higher peak
        # is kept: the conservative percentage). One dense run even in full mode: 128^3 takes a minute.
        dense_res, note = (64, "dense eval timed at 64^3, scaled by point count") if quick else (128, "")
        peak_before = matmul_peak_gflops(repeats)
        t_dense_eval, grids = best_of(1, lambda: mise(eval_fn, 1, resolution_0=dense_res, upsampling_steps=0,
                                                             threshold=THRESHOLD))
        peak_after = matmul_peak_gflops(repeats)
        dense_peak = max(peak_before, peak_after)
        t_dense_eval *= n_dense / (dense_res + 1) ** 3
        t_dense_mc = t_mc  # marching cubes of the same 129^3 grid size and surface
        if not quick:
            start = time.perf_counter()
            marching_cubes(grids[0].values, LEVEL)
            t_dense_mc = time.perf_counter() - start
        mise_ms, dense_ms = 1e3 * (t_eval + t_mc), 1e3 * (t_dense_eval + t_dense_mc)
        dense_gflops = n_dense * flops / t_dense_eval / 1e9
        rows += [
            _fig("extraction", "MISE points / dense at 128^3", 100 * mesh.n_evaluated / n_dense, "%",
                 f"{mesh.n_evaluated} points"),
            _fig("extraction", "MISE ms/mesh at 128^3, full image decoder", mise_ms, "ms",
                 f"eval {1e3 * t_eval:.0f} + MC {1e3 * t_mc:.0f}"),
            _fig("extraction", "dense ms/mesh at 128^3, full image decoder", dense_ms, "ms", note),
            _fig("extraction", "MISE time / dense time at 128^3", mise_ms / dense_ms, "x", note),
            _fig("extraction", "decoder % of matmul peak (make_eval_fn, dense)", 100 * dense_gflops / dense_peak, "%",
                 f"{dense_gflops:.1f} GFLOP/s; peak {peak_before:.1f} before, {peak_after:.1f} after"),
            _fig("extraction", "decoder % of matmul peak within MISE (incl. octree overhead)",
                 100 * mesh.n_evaluated * flops / t_eval / 1e9 / peak, "%"),
        ]
        # refinement itself: 30 steps from the pipeline's mesh, best of 2 (quick too: a run of 3
        # steps scaled to 30 weighed the first steps' warm-up tenfold), fp32 and the bf16 field
        # (generation.precision=bf16) alternating, so both see the same state of a shared host
        from onet.generation.refine import refine_mesh
        from onet.utils.precision import slow_bf16

        slow = slow_bf16(torch.device("cpu"))
        refine_fields = {"fp32": field_fn_1}
        if not slow:  # emulated bf16 would take minutes and say nothing
            refine_fields["bf16"] = model.make_field_fn(c_1, precision="bf16")
        t_refine = dict.fromkeys(refine_fields, float("inf"))
        for _ in range(2):
            for name, field in refine_fields.items():
                t_one, _ = best_of(1, lambda field=field: refine_mesh(piped.vertices, piped.faces, field, n_steps=30))
                t_refine[name] = min(t_refine[name], t_one)
        t = piped.timings
        note = f"{len(piped.faces)} faces; best of 2 runs of 30 steps"
        rows += [
            _fig("refine", "simplify to 5000 faces, ms/mesh", 1e3 * t["simplify"], "ms"),
            _fig("refine", "refine 30 steps, ms/mesh (full image decoder)", 1e3 * t_refine["fp32"], "ms", note),
            _fig("refine", "vertex normals from the field, ms/mesh", 1e3 * t["normals"], "ms"),
            _fig("refine", "full pipeline ms/mesh at 128^3 (MISE, MC, simplify, refine, normals)",
                 1e3 * (sum(t.values()) - t["refine"] + t_refine["fp32"]), "ms", "with the refinement row's time"),
        ]
        if slow:
            rows.append(_fig("refine", "refine 30 steps, ms/mesh, bf16 field (full image decoder)", None, "ms",
                             f"not measured: {slow}"))
        else:
            rows.append(_fig("refine", "refine 30 steps, ms/mesh, bf16 field (full image decoder)",
                             1e3 * t_refine["bf16"], "ms",
                             f"{t_refine['fp32'] / t_refine['bf16']:.2f}x the fp32 speed; {note}"))

    if device == "cuda":
        batch = 8 if quick else 32
        try:
            rate, mem = gpu_meshes_per_second(batch, device, repeats)
            rows += [_fig("extraction", "meshes/s at 128^3 batched, full image decoder, GPU", rate, "meshes/s",
                          f"batch {batch}, no refinement, encoding excluded"),
                     _fig("extraction", "peak GPU memory, batched MISE at 128^3", mem, "MB", f"batch {batch}")]
        except RuntimeError as e:
            rows.append(_fig("extraction", "meshes/s at 128^3 batched, full image decoder, GPU", None, "meshes/s", str(e)))
    else:
        rows.append(_fig("extraction", "meshes/s at 128^3 batched, full image decoder, GPU", None, "meshes/s"))

    field = "chair" if quick else "img"
    try:
        m = _memory_in_subprocess(256, field)
        what = "analytic chair (quick; the full run uses the image decoder)" if field == "chair" else "full image decoder"
        rows.append(_fig("memory", "256^3 extraction peak memory (process RSS)", m["peak_rss_mb"] / 1024, "GB",
                         f"{what}, MISE from 32^3; {m['rss_before_mb']:.0f} MB before; {m['seconds']:.1f} s"))
    except (RuntimeError, ValueError, OSError) as e:
        rows.append(_fig("memory", "256^3 extraction peak memory (process RSS)", None, "GB", str(e)))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--full", action="store_true", help="also 256^3")
    parser.add_argument("--resolution-0", type=int, default=32, help="MISE coarse resolution (default 32)")
    parser.add_argument("--batch-size", type=int, default=1, help="objects per batched extraction")
    parser.add_argument("--points-chunk", type=int, default=100_000)
    parser.add_argument("--safety-margin", action="store_true")
    parser.add_argument("--logit-margin", type=float, default=0.0,
                        help="MISE: also refine cells within this many logits of tau (default 0)")
    parser.add_argument("--max-dense", type=int, default=256, help="skip dense evaluation above this resolution")
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs")
    parser.add_argument("--skip-model", action="store_true", help="analytic chair only")
    parser.add_argument("--pipeline", action="store_true", help="stage breakdown with simplify + refine")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--memory", type=int, default=None, metavar="R",
                        help="only measure peak RSS of one MISE extraction at R^3; prints JSON")
    parser.add_argument("--memory-field", choices=["chair", "img"], default="chair", help="field for --memory")
    parser.add_argument("--marching-cubes", action="store_true",
                        help="only the table of marching-cubes backends at 128^3 (B = 1, 8, 32)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="device for --marching-cubes (default: cuda when available)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory:
        import json

        print(json.dumps(memory_at(args.memory, args.memory_field)))
        return
    if args.marching_cubes:
        bench_marching_cubes(args.device, repeats=max(args.repeats, 3))
        return
    resolutions = sorted(set(args.resolutions + ([256] if args.full else [])))

    # warm up kernels and allocators so the first row is not penalised
    extract_meshes(chair_eval_fn, 1, resolution_0=16, upsampling_steps=1)
    peak = matmul_peak_gflops(args.repeats)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"fp32 matmul (4096x256)@(256x256): {peak:.1f} GFLOP/s, RSS before: {peak_rss_mb():.0f} MB")
    print(HEADER)
    bench_field("chair", chair_eval_fn, None, resolutions, args, peak)
    if args.pipeline:
        bench_pipeline("chair", chair_eval_fn, lambda p: chair_logits(p), args.points_chunk)

    if args.skip_model:
        return
    for label, hidden, c_dim, width in [("img-256", 256, 256, 64), ("img-128", 128, 128, 32)]:
        fields = build_model_field(hidden, c_dim, width, args.batch_size)
        if fields is None:
            continue
        eval_fn, eval_fn_1, field_fn_1, _ = fields
        eval_fn(torch.zeros(args.batch_size, 10_000, 3))  # warm-up
        bench_field(label, eval_fn, decoder_flops_per_point(hidden), resolutions, args, peak)
        if args.pipeline:
            bench_pipeline(label, eval_fn_1, field_fn_1, args.points_chunk)


if __name__ == "__main__":
    main()

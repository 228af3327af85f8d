"""The 2-D benchmark of thesis §8.1 / Table 8.1, trained as batched tensor programs.

Protocol: six 2-D distributions, five methods (unregularised NS-GAN,
WGAN-GP with n_d = 1 and 5, NS-GAN + R1, NS-GAN + R2), six architectures
(generator and discriminator: 4 linear layers, hidden width 8 / 16 / 32,
LeakyReLU(0.2) or Tanh), SGD lr {5e-3, 1e-2, 2e-2, 5e-2} and RMSProp lr
{5e-5, 1e-4, 2e-4, 5e-4}, γ ∈ {1, 3, 10} for R1 / R2 / WGAN-GP, 50k generator
iterations, batch 64, z ~ N(0, I_2), AltGD (a generator step, then n_d
discriminator steps, the first on the same z). Metric: W1 between 2048
generated and 2048 data samples by exact assignment, averaged over
checkpoints in the last 20% of training; the best setting per method and
architecture, averaged over architectures. γ follows onet.gan.regularizers
(R1 = γ/2 E||∇d||², WGAN-GP γ E(||∇d|| − 1)²).

Choosing the best setting by 2048-sample assignments for thousands of runs
would take hours (about 1 s each, more for collapsed generators), so the
choice uses 256 + 256-sample W1 (also exact assignment) at every checkpoint;
the reported number is then the 2048 + 2048 W1 of the chosen run at the same
checkpoints.

Distributions (Fig. 8.1 shows them only as pictures; our parameters):
  gaussian      N(0, 0.5² I)
  line          uniform on the segment [−1, 1] x {0}
  circle        uniform on the unit circle
  four-lines    uniform on four vertical segments x ∈ {−0.75, −0.25, 0.25, 0.75}, y ∈ [−1, 1]
  four-squares  uniform on four squares of side 0.6 centred at (±0.5, ±0.5)
  eight         eight Gaussians (std 0.02) at the 8th roots of unity

Speed: the runs of one architecture and one kind (unregularised, R1/R2,
WGAN-GP n_d = 1, WGAN-GP n_d = 5) are slices of one set of stacked weights
(R, in, out); a step of all of them is a handful of batched matmuls with
hand-derived gradients (onet.gan.stacked, penalties' double backward
included), per-run learning rates, per-run masks choosing SGD or RMSProp and
R1 or R2, and no work spent on penalties a run does not have.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from onet.gan.metrics import wasserstein1
from onet.gan.plot import COLORS, Figure
from onet.gan.stacked import StackedMLP, d_grads, flatten, g_grads, sample, views
from onet.utils.device import keep_freed_memory
from onet.utils.io import write_bytes_atomic, write_text_atomic
from onet.utils.parallel import stopping

DISTRIBUTIONS = ("gaussian", "line", "circle", "four-lines", "four-squares", "eight")
METHODS = ("unreg", "wgan-gp-1", "wgan-gp-5", "r1", "r2")
METHOD_TITLES = {"unreg": "unregularized", "wgan-gp-1": "WGAN-GP (n_d = 1)", "wgan-gp-5": "WGAN-GP (n_d = 5)",
                 "r1": "R1-regularized", "r2": "R2-regularized"}
# Table 8.1 of the thesis (rows: distributions, then the mean)
THESIS = {
    "gaussian": (0.087, 0.479, 0.078, 0.049, 0.050), "line": (0.037, 0.350, 0.038, 0.030, 0.028),
    "circle": (0.059, 0.307, 0.067, 0.056, 0.059), "four-lines": (0.180, 0.214, 0.121, 0.107, 0.099),
    "four-squares": (0.232, 0.373, 0.159, 0.157, 0.151), "eight": (0.079, 0.390, 0.088, 0.080, 0.082),
    "mean": (0.112, 0.352, 0.092, 0.080, 0.078),
}
Z_DIM, BATCH, N_EVAL, N_SELECT = 2, 64, 2048, 256
COMPILE_FROM = 10_000   # --compile auto: torch.compile the steps from this many iterations on


@dataclass(frozen=True)
class Grid:
    """What to train: iterations, architectures (width, activation), optimiser grid, γ grid, checkpoints."""

    iters: int = 50_000
    widths: tuple = (8, 16, 32)
    activations: tuple = ("leaky", "tanh")
    sgd_lrs: tuple = (5e-3, 1e-2, 2e-2, 5e-2)
    rms_lrs: tuple = (5e-5, 1e-4, 2e-4, 5e-4)
    gammas: tuple = (1.0, 3.0, 10.0)
    checkpoints: int = 5           # evenly spread over the last 20% of iterations
    batch: int = BATCH
    eval_samples: int = N_EVAL     # reported W1: this many generated and data samples
    select_samples: int = N_SELECT  # W1 that chooses the best setting (cheaper)


FULL = Grid()
QUICK = Grid(iters=2000, widths=(16,), sgd_lrs=(2e-2, 5e-2), rms_lrs=(2e-4, 5e-4), gammas=(1.0, 10.0),
             checkpoints=2)


def sample_data(name: str, n: int, gen: torch.Generator, device="cpu") -> torch.Tensor:
    """n samples (n, 2) of one distribution (parameters in the module docstring)."""
    u = torch.rand(n, 2, generator=gen, device=device)
    if name == "gaussian":
        return 0.5 * torch.randn(n, 2, generator=gen, device=device)
    if name == "line":
        return torch.stack([2 * u[:, 0] - 1, torch.zeros_like(u[:, 0])], 1)
    if name == "circle":
        a = 2 * math.pi * u[:, 0]
        return torch.stack([a.cos(), a.sin()], 1)
    if name == "four-lines":
        k = torch.randint(0, 4, (n,), generator=gen, device=device)
        return torch.stack([-0.75 + 0.5 * k, 2 * u[:, 1] - 1], 1)
    if name == "four-squares":
        k = torch.randint(0, 4, (n, 2), generator=gen, device=device) % 2
        return (k * 2 - 1) * 0.5 + 0.6 * (u - 0.5)
    if name == "eight":
        k = torch.randint(0, 8, (n,), generator=gen, device=device)
        a = 2 * math.pi * k / 8
        return torch.stack([a.cos(), a.sin()], 1) + 0.02 * torch.randn(n, 2, generator=gen, device=device)
    raise ValueError(f"unknown distribution {name!r}; choose from {', '.join(DISTRIBUTIONS)}")


@dataclass(frozen=True)
class Run:
    """One GAN of the grid."""

    dist: str
    method: str
    width: int
    act: str
    opt: str
    lr: float
    gamma: float

    @property
    def arch(self) -> str:
        return f"{self.width}-{self.act}"


def grid_runs(grid: Grid, methods, distributions) -> list[Run]:
    runs = []
    settings = [("sgd", lr) for lr in grid.sgd_lrs] + [("rmsprop", lr) for lr in grid.rms_lrs]
    for dist, width, act, method in itertools.product(distributions, grid.widths, grid.activations, methods):
        for (opt, lr), gamma in itertools.product(settings, (0.0,) if method == "unreg" else grid.gammas):
            runs.append(Run(dist, method, width, act, opt, lr, gamma))
    return runs


def rms_sgd_step(p: torch.Tensor, v: torch.Tensor, g: torch.Tensor, lr: torch.Tensor, rms: torch.Tensor) -> None:
    """In place: per-run SGD or RMSProp (α = 0.99, ε = 1e-8); lr and rms (1 for RMSProp) broadcast
    against p with the runs along dim 0; only RMSProp runs keep a second moment v."""
    v.mul_(1 - 0.01 * rms).addcmul_(0.01 * rms * g, g)
    p.sub_(lr * torch.where(rms > 0, g / (v.sqrt() + 1e-8), g))


def _g_update(gflat, gv, dflat, glayout, dlayout, lr, rms, act: str, z, wgan: bool) -> None:
    """One generator step of every run, in place on gflat / gv."""
    grads = flatten(g_grads(views(gflat, glayout), views(dflat, dlayout), act, z, wgan))
    rms_sgd_step(gflat, gv, grads, lr, rms)


def _d_update(dflat, dv, gflat, dlayout, glayout, lr, rms, act: str, kind: str, z, xr, gamma, on_fake, t) -> None:
    """One discriminator step of every run on fakes G(z) and data xr, in place on dflat / dv."""
    fake = sample(views(gflat, glayout), z, act)
    grads = flatten(d_grads(views(dflat, dlayout), act, kind, xr, fake, gamma, on_fake, t))
    rms_sgd_step(dflat, dv, grads, lr, rms)


class _Compiled:
    """fn through torch.compile; if the first call cannot compile (no C++ compiler, an op inductor
    lacks, ...) say so once and run fn itself, the same computation."""

    def __init__(self, fn):
        self.fn, self.compiled, self.checked = fn, torch.compile(fn, dynamic=False), False

    def __call__(self, *args):
        if self.checked:
            return self.compiled(*args)
        try:
            out = self.compiled(*args)
        except Exception as err:   # noqa: BLE001 - any failure to build the kernels: fall back
            print(f"bench2d: torch.compile failed ({type(err).__name__}: {str(err)[:300]}); running eagerly",
                  file=sys.stderr)
            self.compiled = self.fn
            out = self.fn(*args)
        self.checked = True
        return out


def group_kind(method: str) -> str:
    """Runs of one kind share a program: 'none' (unregularised), 'zc' (R1 / R2), 'gp' (WGAN-GP)."""
    return "none" if method == "unreg" else ("gp" if method.startswith("wgan") else "zc")


def group_cost(n_runs: int, width: int, n_d: int) -> float:
    """Relative CPU time of a group per iteration, for ordering work: about linear in the runs and in
    n_d + 1/4 (a generator step costs a quarter of a discriminator step; the penalties change little),
    a little more than linear in the width (CPU seconds of the full grid's groups, 2026-12-03)."""
    return n_runs * (n_d + 0.25) * width ** 1.2


def train_group(runs: list[Run], grid: Grid, n_d: int, *, seed: int, device, progress: bool = True,
                compile: bool = False, stats: dict | None = None):
    """Train runs that share architecture, group kind and n_d as one program.

    compile: run each step through torch.compile (fuses the elementwise work around the matmuls;
    1.1-2x faster per step here, about 15 s to build per group, so worth it for long runs only).
    stats: if given, gets 'seconds_per_iter', the mean over the iterations after the third (so
    without the compile), for estimates of long runs from short ones.

    Returns (select_w1 (R, C) numpy: W1 on grid.select_samples samples at each checkpoint,
    snapshots: list of C lists of generator parameter tensors (R, ...) on the CPU).
    """
    from tqdm import tqdm

    r, width, kind = len(runs), runs[0].width, group_kind(runs[0].method)
    if any(group_kind(x.method) != kind or x.arch != runs[0].arch for x in runs):
        raise ValueError("train_group needs runs of one architecture and one group kind")
    gen = torch.Generator(device=device).manual_seed(seed)
    act = runs[0].act
    G = StackedMLP(r, Z_DIM, width, 2, act, gen, device)
    D = StackedMLP(r, 2, width, 1, act, gen, device)
    col = lambda vals: torch.tensor(vals, dtype=torch.float32, device=device)  # noqa: E731
    lr, rms = col([x.lr for x in runs]), col([float(x.opt == "rmsprop") for x in runs])
    gamma = col([x.gamma for x in runs])
    on_fake = torch.tensor([x.method == "r2" for x in runs], device=device).view(r, 1)
    lr, rms = lr.view(r, 1), rms.view(r, 1)
    gv, dv = torch.zeros_like(G.flat), torch.zeros_like(D.flat)   # RMSProp's second moments
    g_update, d_update = _g_update, _d_update
    if compile:
        from torch import _dynamo

        _dynamo.reset()   # groups differ in shapes: start each from an empty cache
        g_update, d_update = _Compiled(_g_update), _Compiled(_d_update)
    dist_idx = {d: torch.tensor([i for i, x in enumerate(runs) if x.dist == d], device=device)
                for d in sorted(set(x.dist for x in runs))}
    B = grid.batch

    def real(n):
        x = torch.empty(r, n, 2, device=device)
        for d, idx in dist_idx.items():
            x[idx] = sample_data(d, len(idx) * n, gen, device).view(len(idx), n, 2)
        return x

    ckpts = sorted(set(np.linspace(grid.iters * 0.8, grid.iters, grid.checkpoints).round().astype(int).tolist()))
    select, snaps = [], []
    for it in tqdm(range(1, grid.iters + 1), desc=f"{runs[0].arch} {kind} n_d {n_d}: {r} GANs",
                   disable=not progress, leave=False, mininterval=2):
        if it == 4:
            t_steady = time.perf_counter()
        # generator step: each run's mean loss (NS softplus(-d), or WGAN -d), summed over runs;
        # gradients hand-derived in onet.gan.stacked (autograd's graphs cost more than the matmuls here)
        z = torch.randn(r, B, Z_DIM, generator=gen, device=device)
        g_update(G.flat, gv, D.flat, G.layout, D.layout, lr, rms, act, z, kind == "gp")
        for k in range(n_d):
            zk = z if k == 0 else torch.randn(r, B, Z_DIM, generator=gen, device=device)
            xr = real(B)
            t = torch.rand(r, B, 1, generator=gen, device=device) if kind == "gp" else None
            d_update(D.flat, dv, G.flat, D.layout, G.layout, lr, rms, act, kind, zk, xr, gamma, on_fake, t)
        if it in ckpts:
            with torch.no_grad():
                snap = [p.detach().cpu().clone() for p in G.params]
                fake = G(torch.randn(r, grid.select_samples, Z_DIM, generator=gen, device=device)).cpu().numpy()
                data = real(grid.select_samples).cpu().numpy()
            select.append([wasserstein1(f, d) for f, d in zip(fake, data)])
            snaps.append(snap)
    if stats is not None and grid.iters > 3:
        stats["seconds_per_iter"] = (time.perf_counter() - t_steady) / (grid.iters - 3)
    return np.array(select).T, snaps


def _train_job(job, progress: bool = False):
    """One group in a (possibly separate, single-threaded) process: (select, snapshots, seconds)."""
    runs, grid, n_d, seed, device, compile = job
    torch.set_num_threads(1)
    keep_freed_memory()
    t = time.time()
    sel, sn = train_group(runs, grid, n_d, seed=seed, device=torch.device(device), progress=progress,
                          compile=compile)
    return sel, sn, time.time() - t


def _w1_job(args):
    a, b = args
    return wasserstein1(a, b)


def _map_w1(pairs, workers: int, progress: bool = False) -> list[float]:
    """Exact-assignment W1 of each (a, b) pair; about a second each at 2048 + 2048, so minutes in all."""
    from tqdm import tqdm

    bar = dict(total=len(pairs), desc="bench2d W1", disable=not progress)
    if workers <= 1 or len(pairs) < 4:
        return [_w1_job(p) for p in tqdm(pairs, **bar)]
    with stopping(ProcessPoolExecutor(workers)) as ex:  # Ctrl-C stops the workers at once
        return list(tqdm(ex.map(_w1_job, pairs, chunksize=max(1, len(pairs) // (16 * workers))), **bar))


@dataclass
class Bench2dResult:
    table: dict          # {dist: {method: W1 mean over architectures}}
    floor: dict          # {dist: W1 of data against data}
    best: list           # rows: dist, method, arch, opt, lr, gamma, w1_select, w1
    seconds: float
    markdown: str


def run_bench2d(*, quick: bool = False, out_dir: str | Path | None = "out/gan/bench2d", device: str = "cpu",
                methods=METHODS, distributions=DISTRIBUTIONS, iters: int | None = None, seed: int = 0,
                progress: bool = True, workers: int | None = None, grid: Grid | None = None,
                compile: str = "auto", print_fn=print) -> Bench2dResult:
    """Train the grid, choose the best setting per (distribution, method, architecture), report W1.

    Writes into out_dir: bench2d.md, bench2d.csv (one row per chosen run), runs.csv (every run's
    selection W1), samples.png; groups/*.pt hold finished groups, so a rerun resumes.
    """
    import os
    t0 = time.time()
    dev = torch.device("cuda" if device in ("cuda", "auto") and torch.cuda.is_available() else "cpu")
    if device == "cuda" and dev.type != "cuda":
        raise RuntimeError("--device cuda: no CUDA device is available")
    grid = grid or (QUICK if quick else FULL)
    if iters is not None:
        grid = Grid(**{**asdict(grid), "iters": iters})
    workers = workers or min(2, os.cpu_count() or 1)
    if compile not in ("auto", "on", "off"):
        raise ValueError(f"compile must be auto, on or off, not {compile!r}")
    # auto: compiling costs ~15 s per group and saves 10-50% of each step, so only long runs gain
    compiled = compile == "on" or (compile == "auto" and grid.iters >= COMPILE_FROM)
    threads = torch.get_num_threads()
    try:
        # the batched ops are small: one thread avoids intra-op synchronisation, which on a shared
        # 2-core machine made steps 10-50x slower than single-threaded ones (measured side by side)
        torch.set_num_threads(1)
        return _run(grid, methods, distributions, quick, out_dir, dev, seed, progress, workers, print_fn, t0,
                    compiled)
    finally:
        torch.set_num_threads(threads)


def _run(grid, methods, distributions, quick, out_dir, dev, seed, progress, workers, print_fn, t0, compiled):
    from tqdm import tqdm

    runs = grid_runs(grid, methods, distributions)
    out = Path(out_dir) if out_dir is not None else None
    select = np.full((len(runs), grid.checkpoints), np.nan)
    snaps: dict[int, list] = {}
    groups = {}
    for i, x in enumerate(runs):
        groups.setdefault((x.width, x.act, group_kind(x.method), 5 if x.method == "wgan-gp-5" else 1), []).append(i)
    todo, results = [], {}
    for (width, act, kind, n_d), idx in sorted(groups.items()):
        key = f"{width}-{act}_{kind}_nd{n_d}"
        tag = json.dumps({"grid": asdict(grid), "runs": [asdict(runs[i]) for i in idx], "seed": seed}, sort_keys=True)
        cache = out / "groups" / f"{key}.pt" if out is not None else None
        saved = torch.load(cache, weights_only=False) if cache is not None and cache.exists() else None
        if saved is not None and saved.get("tag") == tag:
            results[key] = (saved["select"], saved["snaps"])
            print_fn(f"bench2d: {key} already trained ({len(idx)} GANs), reusing {cache}")
        else:
            todo.append((key, idx, n_d, tag, cache))

    def finish(key, tag, cache, sel, sn, seconds, n):
        results[key] = (sel, sn)
        print_fn(f"bench2d: {key}: {n} GANs x {grid.iters} iterations in {seconds:.0f} s")
        if cache is not None:
            buf = io.BytesIO()
            torch.save({"tag": tag, "select": sel, "snaps": sn}, buf)
            write_bytes_atomic(cache, buf.getvalue())

    # the dearest groups first: the two workers then end within about the cheapest group of each other
    # (in key order the width-32 groups came last, one core finishing them alone); seeds come from the
    # keys, so the order does not change any result
    todo.sort(key=lambda t: -group_cost(len(t[1]), runs[t[1][0]].width, t[2]))
    jobs = [([runs[i] for i in idx], grid, n_d, seed + zlib.crc32(key.encode()), str(dev), compiled)
            for key, idx, n_d, _, _ in todo]
    if workers > 1 and dev.type == "cpu" and len(todo) > 1:
        # independent groups on separate single-threaded processes: both cores busy
        with stopping(ProcessPoolExecutor(workers)) as ex:  # Ctrl-C stops the workers at once
            futures = {ex.submit(_train_job, job): t for job, t in zip(jobs, todo)}
            for fut in tqdm(as_completed(futures), total=len(futures), desc="bench2d groups", disable=not progress):
                key, idx, _, tag, cache = futures[fut]
                finish(key, tag, cache, *fut.result(), len(idx))
    else:
        for job, (key, idx, _, tag, cache) in zip(jobs, todo):
            finish(key, tag, cache, *_train_job(job, progress=progress), len(idx))
    for (width, act, kind, n_d), idx in sorted(groups.items()):
        sel, sn = results[f"{width}-{act}_{kind}_nd{n_d}"]
        select[idx, :sel.shape[1]] = sel
        for j, i in enumerate(idx):
            snaps[i] = [[p[j] for p in snap] for snap in sn]

    # choose the best setting per (dist, method, arch) on the 512-sample W1, then score it at 2048 + 2048
    gen = torch.Generator().manual_seed(seed + 7)
    best_idx = {}
    for i, x in enumerate(runs):
        k = (x.dist, x.method, x.arch)
        score = np.nanmean(select[i]) if np.isfinite(select[i]).any() else np.inf
        if k not in best_idx or score < best_idx[k][1]:
            best_idx[k] = (i, score)
    pairs, owners = [], []
    for k, (i, _) in sorted(best_idx.items()):
        x = runs[i]
        for snap in snaps[i]:
            G = StackedMLP(1, Z_DIM, x.width, 2, x.act, gen, "cpu")
            with torch.no_grad():
                fake = G(torch.randn(1, grid.eval_samples, Z_DIM, generator=gen), [p[None] for p in snap])[0].numpy()
            pairs.append((fake, sample_data(x.dist, grid.eval_samples, gen).numpy()))
            owners.append(k)
    floor_pairs = [(sample_data(d, grid.eval_samples, gen).numpy(), sample_data(d, grid.eval_samples, gen).numpy())
                   for d in distributions for _ in range(grid.checkpoints)]
    values = _map_w1(pairs + floor_pairs, workers, progress)
    w1, floor = {}, {}
    for k, v in zip(owners, values[:len(pairs)]):
        w1.setdefault(k, []).append(v)
    for j, d in enumerate(distributions):
        floor[d] = float(np.mean(values[len(pairs) + j * grid.checkpoints: len(pairs) + (j + 1) * grid.checkpoints]))
    best, table = [], {d: {} for d in distributions}
    for k, (i, score) in sorted(best_idx.items()):
        x = runs[i]
        val = float(np.mean(w1[k]))
        best.append({"dist": x.dist, "method": x.method, "arch": x.arch, "opt": x.opt, "lr": x.lr,
                     "gamma": x.gamma, "w1_select": score, "w1": val})
    for d in distributions:
        for m in methods:
            vals = [b["w1"] for b in best if b["dist"] == d and b["method"] == m]
            table[d][m] = float(np.mean(vals))
    seconds = time.time() - t0
    md = format_table(table, floor, methods, distributions, grid, seconds, quick)
    print_fn(md)
    res = Bench2dResult(table, floor, best, seconds, md)
    if out is not None:
        write_text_atomic(out / "bench2d.md", md + "\n")
        write_text_atomic(out / "bench2d.csv", _rows_csv(best))
        write_text_atomic(out / "runs.csv", _rows_csv([{**asdict(x), "w1_select": float(np.nanmean(select[i]))}
                                                      for i, x in enumerate(runs)]))
        write_bytes_atomic(out / "samples.png", plot_samples(runs, best_idx, snaps, methods, distributions))
    return res


def _rows_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def format_table(table, floor, methods, distributions, grid: Grid, seconds: float, quick: bool) -> str:
    """Ours beside the thesis's Table 8.1 (ours / thesis per cell), with the finite-sample floor."""
    col = {m: i for i, m in enumerate(METHODS)}
    archs = len(grid.widths) * len(grid.activations)
    head = (f"2-D benchmark{' (--quick)' if quick else ''}: W1 (2048 + 2048 samples, exact assignment), "
            f"best setting per method and architecture, mean over {archs} architectures; {grid.iters} "
            f"iterations, checkpoints in the last 20%; {seconds / 60:.1f} min. Cells: ours / thesis.")
    lines = [head, "", "| distribution | W1 floor | " + " | ".join(METHOD_TITLES[m] for m in methods) + " |",
             "|---|---|" + "---|" * len(methods)]
    for d in distributions:
        cells = [f"{table[d][m]:.3f} / {THESIS[d][col[m]]:.3f}" for m in methods]
        lines.append(f"| {d} | {floor[d]:.3f} | " + " | ".join(cells) + " |")
    mean = {m: float(np.mean([table[d][m] for d in distributions])) for m in methods}
    thesis_mean = "mean" if len(distributions) == len(DISTRIBUTIONS) else None
    cells = [f"{mean[m]:.3f} / " + (f"{THESIS['mean'][col[m]]:.3f}" if thesis_mean else "—") for m in methods]
    lines.append(f"| mean | {np.mean([floor[d] for d in distributions]):.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_samples(runs, best_idx, snaps, methods, distributions, n: int = 1000) -> bytes:
    """Rows: distributions; columns: methods; data (blue) and the best run's samples (orange), last checkpoint."""
    fig = Figure(len(distributions), len(methods), size=(230, 230))
    gen = torch.Generator().manual_seed(3)
    for r_, d in enumerate(distributions):
        data = sample_data(d, n, gen).numpy()
        for c, m in enumerate(methods):
            cands = [(s, i) for (dd, mm, _), (i, s) in best_idx.items() if dd == d and mm == m]
            i = min(cands)[1]
            x = runs[i]
            G = StackedMLP(1, Z_DIM, x.width, 2, x.act, gen, "cpu")
            with torch.no_grad():
                fake = G(torch.randn(1, n, Z_DIM, generator=gen), [p[None] for p in snaps[i][-1]])[0].numpy()
            p = fig.panel(r_, c, (-1.6, 1.6), (-1.6, 1.6), title=f"{d}, {m}")
            p.points(data[:, 0], data[:, 1], COLORS["data"], r=1.0)
            p.points(fake[:, 0], fake[:, 1], COLORS["fake"], r=1.0)
    return fig.png()

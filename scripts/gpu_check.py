"""Every CUDA path of onet, run once, with one table of results (the Python half of gpu_check.sh).

    python scripts/gpu_check.py            # on a CUDA machine (about 3-4 minutes on one H100-class GPU)
    python scripts/gpu_check.py --dry-run  # no GPU: the same steps, small, on the CPU (about 2-4 min on 2 cores)

Steps (each is one row; a failing step is reported and the others still run):
  environment     torch, CUDA, GPU, TF32, Warp
  dataset         the built-in synthetic generator, small (in a temporary folder)
  train fp32      `onet train` of the thesis image model (configs/img.yaml, batch 64) -> it/s
                  (data loading included), and the step alone on a batch already on the GPU
                  (scripts/bench_train.py's measurement) against its FLOP bound (the step's
                  linear and convolution FLOPs over the matmul peak measured here)
  train amp       the same with train.amp=true (bf16 autocast where supported, else fp16 + GradScaler)
  train compiled  the same with train.compile=true (torch.compile; one GPU: CUDA graphs), fp32, and its
                  step alone against the bound and against the eager step
  resume          the fp32 run continued (checkpoint RNG/optimizer/scaler restore on the GPU)
  torchrun DDP    `torchrun --nproc_per_node 1 -m onet train` (NCCL on CUDA)
  MISE GPU = CPU  batched MISE + marching cubes of the same objects at 128^3 on the GPU and the
                  CPU, TF32 off: same vertex count and every vertex within 1e-4 of the box; and
                  torch marching cubes on the GPU's grids: skimage's vertices (within 1e-6)
  refine+normals  simplification to 5000 faces, 30 refinement steps and vertex normals on the GPU
  generate B=...  `onet generate` itself (the library call the CLI makes) on a folder of images,
                  128^3, no refinement, previews and input copies off -> meshes/s of the whole
                  call and after its first batch (start-up excluded), and the marching-cubes time
                  per mesh, with the default backend (auto: torch on the GPU), then the largest
                  batch in bf16, with skimage (CPU marching cubes in worker processes) and with
                  warp (when installed)
  eval            `onet eval` of the test split's meshes
The --dry-run sizes are small (a narrow model, 32^3 grids) so the CPU finishes quickly: the
figures then only show that each path runs; the aims are for the GPU run.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))  # bench_train's step measurement

from onet.config import CONFIG_DIR, load_config  # noqa: E402

BOX = 1.1
TRAIN_OVERRIDES_GPU = ["model.encoder_kwargs={pretrained: false}", "train.batch_size=64"]
TRAIN_OVERRIDES_CPU = ["model.encoder_kwargs={width: 8, pretrained: false}",
                       "model.decoder_kwargs={hidden_size: 32, n_blocks: 2}", "model.c_dim=16",
                       "train.batch_size=4", "data.img_size=32", "data.points_subsample=256"]


class Table:
    def __init__(self):
        self.rows: list[tuple[str, str, str, str]] = []

    def add(self, check: str, ok: bool | None, figure: str = "", aim: str = "") -> None:
        status = "ok" if ok else ("FAIL" if ok is False else "-")
        self.rows.append((check, status, figure, aim))
        print(f"[gpu_check] {check}: {status} {figure}", flush=True)

    def print(self) -> None:
        heads = ("check", "result", "measured", "aim")
        widths = [max(len(h), *(len(r[i]) for r in self.rows)) for i, h in enumerate(heads)]
        line = "| " + " | ".join(h.ljust(w) for h, w in zip(heads, widths)) + " |"
        print("\n" + line)
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for row in self.rows:
            print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |")

    @property
    def failed(self) -> bool:
        return any(r[1] == "FAIL" for r in self.rows)


def step(table: Table, name: str):
    """Decorator: run the step, turn an exception into a FAIL row with its last line."""
    def wrap(fn):
        t0 = time.perf_counter()
        try:
            return fn()
        except Exception as exc:  # a check script reports every failure and goes on
            traceback.print_exc()
            table.add(name, False, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:160])
        finally:
            print(f"[gpu_check] {name} took {time.perf_counter() - t0:.1f} s", flush=True)
        return None
    return wrap


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def matmul_peak(dev: torch.device, dtype: torch.dtype, n: int) -> float:
    """FLOP/s of torch.mm of two (n, n) matrices on `dev` (best of 5 after a warm-up)."""
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    torch.mm(a, b)
    sync(dev)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        torch.mm(a, b)
        sync(dev)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def train_step(dev: torch.device, precision: str, *, name: str = "img", batch_size: int = 64, iters: int = 10,
               repeats: int = 2) -> tuple[float, float]:
    """(seconds, FLOPs) of one training step of configs/<name>.yaml on a batch already on `dev`,
    as `onet train` runs it: scripts/bench_train.py's measurement, which `scripts/benchmark.py`
    reports too (`onet train`'s it/s also holds the data loading)."""
    from bench_train import measure_train_step

    r = measure_train_step(name, dev, precision=precision, batch_size=batch_size, iters=iters, repeats=repeats)
    return r["seconds"], r["flops"]


def steady_it_per_s(metrics_csv: Path, skip: int) -> float:
    """Iterations per second between the logged iterations `skip` and the last (startup excluded)."""
    with open(metrics_csv, newline="") as f:
        rows = [(int(r["it"]), float(r["time"])) for r in csv.DictReader(f) if r["loss"]]
    start = next((it, t) for it, t in rows if it >= skip)
    end = rows[-1]
    return (end[0] - start[0]) / max(end[1] - start[1], 1e-9)


def steady_meshes_per_s(mesh_dir: Path, batch: int) -> float | None:
    """Meshes per second after the first batch was written (start-up excluded: model load, device
    and kernel warm-up), from the mesh files' write times; None with a single batch."""
    times = sorted(f.stat().st_mtime for f in mesh_dir.rglob("*") if f.is_file())
    if len(times) <= batch:
        return None
    return (len(times) - batch) / max(times[-1] - times[batch - 1], 1e-9)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="no GPU needed: every step, small, on the CPU")
    parser.add_argument("--work", default=None, help="working folder (default: a temporary one, removed after)")
    args = parser.parse_args()

    t_start = time.perf_counter()
    table = Table()
    cuda = torch.cuda.is_available()
    if not cuda:
        print("[gpu_check] no CUDA GPU is visible to torch "
              f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}): "
              "running the CPU dry run, which exercises the device-generic code only", flush=True)
    gpu = cuda and not args.dry_run
    dev = torch.device("cuda" if gpu else "cpu")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="onet-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")

    # ------------------------------------------------------------------ environment
    from onet.utils.device import set_tf32

    warp_version = None
    try:
        import warp
        warp_version = warp.__version__
    except ImportError:
        pass
    if gpu:
        props = torch.cuda.get_device_properties(dev)
        env = (f"torch {torch.__version__} CUDA {torch.version.cuda}; {props.name}, "
               f"{props.total_memory / 2**30:.0f} GiB, sm_{props.major}{props.minor}; bf16 "
               f"{'yes' if torch.cuda.is_bf16_supported() else 'no'}; warp {warp_version or 'not installed'}")
    else:
        env = f"torch {torch.__version__}, CPU dry run ({os.cpu_count()} cores); warp {warp_version or 'not installed'}"
    table.add("environment", True if (gpu or args.dry_run) else None, env)

    # ------------------------------------------------------------------ dataset
    data = work / "data"

    @step(table, "dataset")
    def _():
        from onet.data.synthetic import build_synthetic_dataset

        t0 = time.perf_counter()
        if gpu:
            build_synthetic_dataset(data, n_per_class=8, seed=0, n_views=2, img_size=137, n_points=20000,
                                    n_surface=20000, progress=False)
        else:
            build_synthetic_dataset(data, n_per_class=3, classes=["table", "mug"], seed=0, n_views=1, img_size=32,
                                    n_points=4000, n_surface=4000, progress=False)
        n = sum(1 for _ in data.glob("*/*/points.npz"))
        table.add("dataset", True, f"{n} synthetic objects in {time.perf_counter() - t0:.1f} s")

    # ------------------------------------------------------------------ training
    base = ["device=" + dev.type, f"data.path={data}", "train.print_every=1", "train.validate_every=100000",
            "train.checkpoint_every=100000", "train.max_time=null", "data.points_iou_subsample=2000",
            "generation.resolution_0=32", "generation.upsampling_steps=2", "evaluation.n_points=20000"]
    base += TRAIN_OVERRIDES_GPU if gpu else TRAIN_OVERRIDES_CPU
    iters = 40 if gpu else 4
    config = CONFIG_DIR / "img.yaml" if gpu else CONFIG_DIR / "demo.yaml"
    runs, logs, eager_step = {}, {}, {}

    def train_run(name: str, extra: list[str]):
        from onet.training import train

        cfg = load_config(config, [*base, f"out_dir={work / name}", f"train.max_iters={iters}",
                                   "train.lr_schedule=constant", *extra])
        t0 = time.perf_counter()
        logs[name] = []
        result = train(cfg, device=dev.type, progress=False, log=logs[name].append)
        wall = time.perf_counter() - t0
        runs[name] = cfg
        return cfg, result, wall

    @step(table, "train fp32")
    def _():
        from onet.data.dataset import unit_images

        cfg, result, wall = train_run("train_fp32", ["train.amp=false"])
        # the loader's images arrive as bytes and become floats on the device: every byte as on the CPU
        every = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
        on_device = unit_images({"inputs": every.to(dev)})["inputs"].cpu()
        same = torch.equal(on_device, unit_images({"inputs": every})["inputs"])
        ok = result.iterations == iters and result.best_metric is not None and same
        its = steady_it_per_s(work / "train_fp32" / "metrics.csv", skip=min(10, iters // 2))
        figure = (f"{its:.2f} it/s (batch {cfg['train']['batch_size']}, {iters} its, {wall:.0f} s with start-up; "
                  f"image bytes to floats on the device {'as on the CPU' if same else 'DIFFER from the CPU'})")
        if gpu:
            step_s, flops = train_step(dev, "fp32")
            peak = matmul_peak(dev, torch.float32, 8192)
            ratio = step_s / (flops / peak)
            eager_step.update(seconds=step_s, flops=flops, peak=peak)
            figure += (f" = {1e3 / its:.0f} ms/it with loading; step on a resident batch {1e3 * step_s:.1f} ms = "
                       f"{ratio:.1f}x its FLOP bound ({flops / 1e12:.2f} TFLOP at {peak / 1e12:.0f} TFLOP/s, "
                       f"TF32 {'on' if cfg['tf32'] else 'off'})")
        table.add("train fp32", ok, figure, "step <= 2x FLOP bound" if gpu else "")

    @step(table, "train amp")
    def _():
        cfg, result, wall = train_run("train_amp", ["train.amp=true"])
        ok = result.iterations == iters
        its = steady_it_per_s(work / "train_amp" / "metrics.csv", skip=min(10, iters // 2))
        figure = f"{its:.2f} it/s"
        if gpu:
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            step_s, flops = train_step(dev, "amp")
            peak = matmul_peak(dev, dtype, 8192)
            figure += (f" ({str(dtype).split('.')[-1]} autocast); step on a resident batch {1e3 * step_s:.1f} ms = "
                       f"{step_s / (flops / peak):.1f}x the {str(dtype).split('.')[-1]} FLOP bound "
                       f"({peak / 1e12:.0f} TFLOP/s)")
            if dtype == torch.float16:
                from onet.utils.checkpoints import load_checkpoint
                scale = load_checkpoint(work / "train_amp" / "model.pt").get("scaler", {}).get("scale")
                figure += f"; GradScaler scale checkpointed: {scale}"
        else:
            figure += " (amp is CUDA only: this ran fp32)"
        table.add("train amp", ok, figure, "step <= 2x FLOP bound" if gpu else "")

    @step(table, "train compiled")
    def _():
        # train.compile=true: torch.compile, on one GPU replayed as a CUDA graph; it compiled, or the
        # log says why not (the run then trained eagerly)
        cfg, result, wall = train_run("train_compiled", ["train.amp=false", "train.compile=true"])
        failed = [m for m in logs["train_compiled"] if "torch.compile failed" in m]
        ok = result.iterations == iters and result.best_metric is not None and not failed
        its = steady_it_per_s(work / "train_compiled" / "metrics.csv", skip=min(10, iters // 2))
        figure = f"{its:.2f} it/s ({wall:.0f} s with start-up and compiling)"
        if failed:
            figure += f"; {failed[0]}"
        if gpu:
            from bench_train import measure_train_step

            r = measure_train_step("img", dev, precision="fp32", batch_size=64, iters=10, repeats=2, compile=True)
            ok = ok and r["compiled"]
            peak = eager_step.get("peak") or matmul_peak(dev, torch.float32, 8192)
            figure += (f"; step on a resident batch {1e3 * r['seconds']:.1f} ms = "
                       f"{r['seconds'] / (r['flops'] / peak):.1f}x its FLOP bound")
            if "seconds" in eager_step:
                figure += f", {eager_step['seconds'] / r['seconds']:.2f}x the eager step's speed"
            if not r["compiled"]:
                figure += f" (timed eagerly: {r['compile_failure']})"
        table.add("train compiled", ok, figure, "step <= 2x FLOP bound" if gpu else "")

    @step(table, "resume")
    def _():
        from onet.training import train
        from onet.utils.checkpoints import load_checkpoint

        cfg = dict(runs["train_fp32"])
        cfg["train"] = dict(cfg["train"], max_iters=iters + 3)
        messages: list[str] = []
        result = train(cfg, device=dev.type, progress=False, log=messages.append)
        state = load_checkpoint(work / "train_fp32" / "model.pt")
        ok = result.iterations == iters + 3 and any("resuming" in m for m in messages)
        has_cuda_rng = "cuda" in state["rng"][0]
        table.add("resume", ok and (has_cuda_rng or not gpu),
                  f"continued to it {result.iterations}; per-rank RNG saved ({len(state['rng'])} rank"
                  f"{', with its CUDA stream' if has_cuda_rng else ''})")

    @step(table, "torchrun DDP")
    def _():
        cfg_path = work / "ddp.yaml"
        import yaml
        cfg = dict(runs["train_fp32"], out_dir=str(work / "ddp"))
        cfg["train"] = dict(cfg["train"], max_iters=5)
        cfg_path.write_text(yaml.safe_dump(cfg))
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), "-m", "onet", "train", str(cfg_path), "--device", dev.type,
               "--no-progress"]
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-3000:])
        from onet.utils.checkpoints import load_checkpoint
        ok = done.returncode == 0 and load_checkpoint(work / "ddp" / "model.pt")["it"] == 5
        table.add("torchrun DDP", ok, f"--nproc_per_node 1, {'NCCL' if gpu else 'gloo'}, 5 its in "
                  f"{time.perf_counter() - t0:.0f} s (exit {done.returncode})")

    # ------------------------------------------------------------------ extraction on the device
    from onet.generation import extract_meshes

    res0, steps = (32, 2) if gpu else (8, 2)
    res = res0 * 2**steps

    def encoded(cfg: dict, n: int, device: torch.device, dtype: torch.dtype = torch.float32):
        from onet.data.dataset import DataOptions, ShapeDataset
        from onet.models import load_model

        model, _ = load_model(cfg, Path(cfg["out_dir"]) / "model.pt", device)
        model = model.to(dtype)
        d = cfg["data"]
        ds = ShapeDataset(d["path"], d["test_split"], options=DataOptions.from_config(d), classes=d["classes"],
                          mode="test", seed=0)
        if len(ds) < n:
            raise RuntimeError(f"the test split has {len(ds)} objects, {n} are needed")
        inputs = torch.stack([ds.load_inputs(ds.root / f"{c}/{m}", ds.rng_for(i))
                              for i, (c, m) in enumerate(ds.items[:n])]).to(device, dtype)
        with torch.no_grad():
            c = model.encode_inputs(inputs)
        z = model.get_z_from_prior(n, sample=False, device=device).to(dtype)
        return model, c, z

    @step(table, f"MISE {'GPU' if gpu else 'CPU'} = CPU")
    def _():
        from scipy.spatial import cKDTree

        cfg = runs["train_fp32"]
        n = 3 if gpu else 2
        options = dict(resolution_0=res0, upsampling_steps=steps, points_chunk=100_000)
        meshes = {}
        set_tf32(dev, False)  # strict fp32 for the comparison; TF32's deviation is shown beside it
        try:
            for name, device in (("device", dev), ("cpu", torch.device("cpu"))):
                model, c, z = encoded(cfg, n, device)
                meshes[name] = extract_meshes(model.make_eval_fn(c, z), n, device=device, **options)
                if name == "device":  # the same grids through torch marching cubes on the device
                    meshes["device_torch"] = extract_meshes(model.make_eval_fn(c, z), n, device=device,
                                                            marching_cubes_backend="torch", **options)
            # the rounding scale of fp32 itself: the same objects in float64 on the CPU
            model, c, z = encoded(cfg, n, torch.device("cpu"), torch.float64)
            meshes["fp64"] = extract_meshes(model.make_eval_fn(c, z), n, device="cpu", **options)
            set_tf32(dev, True)
            model, c, z = encoded(cfg, n, dev)
            meshes["tf32"] = extract_meshes(model.make_eval_fn(c, z), n, device=dev, **options)
        finally:
            set_tf32(dev, cfg["tf32"])

        def farthest(a, b) -> float:
            """Largest distance of a vertex of either mesh to the other's nearest vertex (0 when one is empty)."""
            if not len(a.vertices) or not len(b.vertices):
                return 0.0
            return max(float(cKDTree(b.vertices).query(a.vertices)[0].max()),
                       float(cKDTree(a.vertices).query(b.vertices)[0].max()))

        same_counts = all(a.vertices.shape == b.vertices.shape and a.faces.shape == b.faces.shape
                          for a, b in zip(meshes["device"], meshes["cpu"]))
        worst = max(farthest(a, b) for a, b in zip(meshes["device"], meshes["cpu"]))
        worst_tf32 = max(farthest(t, b) for t, b in zip(meshes["tf32"], meshes["cpu"]))
        dev_to_fp64 = max(farthest(a, r) for a, r in zip(meshes["device"], meshes["fp64"]))
        cpu_to_fp64 = max(farthest(b, r) for b, r in zip(meshes["cpu"], meshes["fp64"]))
        # Where the field is flat at the level, fp32 rounding in either path moves a crossing
        # by more than 1e-4 of the box; then the device path passes when it is no further from
        # the float64 reference than the CPU's own fp32 path (twice, for the max of a few samples).
        # torch marching cubes on the device (auto's choice on CUDA) against skimage on the same grids
        torch_mc = max(farthest(a, b) for a, b in zip(meshes["device_torch"], meshes["device"]))
        torch_counts = all(len(a.vertices) == len(b.vertices) for a, b in zip(meshes["device_torch"], meshes["device"]))
        ok = same_counts and (worst <= 1e-4 * BOX or dev_to_fp64 <= 2 * cpu_to_fp64) and torch_counts \
            and torch_mc <= 1e-6 * BOX
        faces = [len(m.faces) for m in meshes["device"]]
        table.add(f"MISE {'GPU' if gpu else 'CPU'} = CPU", ok,
                  f"{n} objects at {res}^3, faces {faces}: same counts {same_counts}, max vertex distance "
                  f"{worst / BOX:.1e} of the box (TF32 on: {worst_tf32 / BOX:.1e}); to the CPU fp64 mesh: "
                  f"{'GPU' if gpu else 'CPU'} {dev_to_fp64 / BOX:.1e}, CPU fp32 {cpu_to_fp64 / BOX:.1e}; torch marching "
                  f"cubes on the same grids: same vertex counts {torch_counts}, max distance {torch_mc / BOX:.1e}",
                  "<= 1e-4 of the box, or no further from fp64 than the CPU; torch = skimage vertices (1e-6)")

    @step(table, "refine+normals")
    def _():
        cfg = runs["train_fp32"]
        n = 2
        n_faces, n_steps = (5000, 30) if gpu else (1000, 3)
        model, c, z = encoded(cfg, n, dev)
        field_fns = [model.make_field_fn(c[i:i + 1], z[i:i + 1]) for i in range(n)]
        t0 = time.perf_counter()
        meshes = extract_meshes(model.make_eval_fn(c, z), n, field_fns=field_fns, resolution_0=res0,
                                upsampling_steps=steps, simplify_nfaces=n_faces, refinement_step=n_steps,
                                vertex_normals=True, device=dev)
        sync(dev)
        wall = (time.perf_counter() - t0) / n
        ok = all(m.normals is not None and np.isfinite(m.vertices).all() and np.isfinite(m.normals).all()
                 and (len(m.normals) == 0 or np.allclose(np.linalg.norm(m.normals, axis=1), 1, atol=1e-4))
                 for m in meshes)
        refine = np.mean([m.timings["refine"] for m in meshes])
        table.add("refine+normals", ok, f"{wall:.2f} s/mesh with {n_steps} refinement steps ({refine:.2f} s) on "
                  f"{[len(m.faces) for m in meshes]} faces", "")

    # ------------------------------------------------------------------ onet generate itself
    images = work / "images"

    def image_folder(n: int) -> Path:
        """n input images (the test renders, repeated) for `onet generate --input`."""
        folder = images / str(n)
        if not folder.is_dir():
            renders = sorted(data.glob("*/*/img_choy2016/*.jpg"))
            folder.mkdir(parents=True)
            for i in range(n):
                shutil.copyfile(renders[i % len(renders)], folder / f"{i:05d}.jpg")
        return folder

    batch_sizes = (1, 8, 32) if gpu else (1, 2, 4)
    counts = {1: 64, 8: 256, 32: 512} if gpu else {1: 4, 2: 8, 4: 8}

    def generate_run(B: int, backend: str = "auto", precision: str | None = None) -> None:
        from onet.generation import generate
        from onet.utils.device import marching_cubes_workers

        # the dry run's largest batch takes the worker-process path that CUDA runs use with skimage
        workers = 2 if not gpu and B == batch_sizes[-1] else "null"
        cfg = load_config(REPO / "configs" / ("img.yaml" if gpu else "demo.yaml"),
                          [*base, f"out_dir={work / 'train_fp32'}", "test.model_file=model.pt",
                           f"generation.marching_cubes_workers={workers}",
                           f"generation.batch_size={B}", "generation.previews=false", "generation.copy_input=false",
                           f"generation.marching_cubes={backend}", f"generation.resolution_0={res0}",
                           f"generation.upsampling_steps={steps}",
                           *([f"generation.precision={precision}"] if precision else [])])
        n = counts[B]
        out = work / f"generate_{backend}_{precision}_{B}"
        t0 = time.perf_counter()
        summary = generate(cfg, device=dev.type, input_dir=image_folder(n), output_dir=out, progress=False,
                           log=lambda *a: None)
        wall = time.perf_counter() - t0
        with open(out / "time_generation.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        mc = 1e3 * np.mean([float(r["marching_cubes"]) for r in rows])
        ev = 1e3 * np.mean([float(r["evaluate"]) for r in rows])
        import yaml
        ran = yaml.safe_load((out / "config.yaml").read_text())["generation"]  # auto resolved, as recorded
        used = ran["marching_cubes"]
        workers = marching_cubes_workers(dev, cfg["generation"]["marching_cubes_workers"])
        where = (f"skimage in {workers} worker processes" if used == "skimage" and workers
                 else f"{used} in the main process" if used == "skimage" or not gpu else f"{used} on the GPU")
        ok = len(summary.written) == n and not summary.failures
        steady = steady_meshes_per_s(out / "meshes", B)
        after = "" if steady is None else f", {steady:.1f} after the first batch"
        label = f"generate B={B}" + ("" if backend == "auto" else f" {backend}") + (f" {precision}" if precision else "")
        table.add(label, ok,
                  f"{n / wall:.1f} meshes/s at {res}^3 ({n} meshes in {wall:.1f} s, start-up included{after}); "
                  f"evaluate {ev:.1f} ms/mesh ({ran['precision']}), marching cubes {mc:.1f} ms/mesh "
                  f"({where})",
                  ">= 100 meshes/s (B=32)" if gpu and B == 32 and backend == "auto" else "")

    # the default (auto: torch marching cubes on the GPU, skimage on the CPU), then the
    # largest batch in bf16 (generation.precision; the config's default is fp32) and with
    # the other backends, for comparison
    for B in batch_sizes:
        step(table, f"generate B={B}")(lambda B=B: generate_run(B))
    step(table, f"generate B={batch_sizes[-1]} bf16")(lambda: generate_run(batch_sizes[-1], precision="bf16"))
    other = "skimage" if gpu else "torch"
    step(table, f"generate B={batch_sizes[-1]} {other}")(lambda: generate_run(batch_sizes[-1], other))
    if warp_version is not None:
        step(table, f"generate B={batch_sizes[-1]} warp")(lambda: generate_run(batch_sizes[-1], "warp"))
    else:
        table.add("generate warp", None, "warp not installed (pip install -e .[gpu])")

    @step(table, "eval")
    def _():
        from onet.cli import main as cli

        import yaml
        cfg = dict(runs["train_fp32"])
        cfg["test"] = dict(cfg["test"], model_file="model.pt")
        cfg["generation"] = dict(cfg["generation"], resolution_0=res0, upsampling_steps=steps, previews=False)
        path = work / "eval.yaml"
        path.write_text(yaml.safe_dump(cfg))
        t0 = time.perf_counter()
        rc_gen = cli(["generate", str(path), "--device", dev.type, "--no-progress"])
        rc_eval = cli(["eval", str(path), "--no-progress"])
        table_file = Path(cfg["out_dir"]) / cfg["evaluation"]["eval_dir"]
        ok = rc_gen == 0 and rc_eval == 0 and any(table_file.glob("*.csv"))
        table.add("eval", ok, f"onet generate + onet eval of the test split in {time.perf_counter() - t0:.0f} s "
                  f"(exit {rc_gen}, {rc_eval})")

    total = time.perf_counter() - t_start
    table.add("total time", total <= 300 if gpu else None, f"{total:.0f} s", "<= 300 s" if gpu else "")
    table.print()
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if table.failed else 0


if __name__ == "__main__":
    sys.exit(main())

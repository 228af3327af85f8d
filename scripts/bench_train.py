"""Benchmark training steps of the thesis models against their FLOP bound.

    python scripts/bench_train.py                              # paper batch sizes (64), CPU (and CUDA)
    python scripts/bench_train.py --batch-size 4 --iters 1     # a quick look on a CPU
    python scripts/bench_train.py --configs img voxels --device cuda --precision fp32 amp
    python scripts/bench_train.py --configs img --device cuda --compile   # eager and torch.compile side by side

For each config (configs/<name>.yaml, the full thesis models) one training
step is Adam on the config's loss over random tensors of the right shapes:
occupancy points (B, T, 3) with T = data.points_subsample (2048; 1024 for
voxels) and the observation (images (B, 3, 224, 224), point clouds (B, 300, 3),
voxels (B, 32, 32, 32), nothing for the unconditional VAE). No dataset or data
loading is involved: this is the model's own speed, as `onet train` runs it
(same autocast, GradScaler and decoder path for each precision).

Precisions: fp32; bf16 (train.precision=bf16: bf16 autocast, on the CPU too);
amp (train.amp on CUDA: fp16 autocast with a GradScaler, bf16 where supported).

FLOP bound: every linear and convolution of the forward and backward pass
(the nominal FLOPs of the model as the plain modules run it, counted by
torch.utils.flop_counter on a batch of 2 and scaled to B; the encoder
included) at the fp32 matmul peak measured in the same run (torch.mm of two
square matrices, --peak-size; TF32 off). step/bound = step time / that bound.
The decoder alone (forward + backward on a fixed code c) gives its FLOP rate
as a percentage of the same peak. ImageNet weights are never loaded (random
init: same speed). Prints a table; never asserts.

`measure_train_step` and `measure_peaks` are the functions to reuse (the GPU
check script times training steps with them).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from onet.config import CONFIG_DIR, ConfigError, load_config  # noqa: E402
from onet.models import build_model, count_parameters  # noqa: E402
from onet.training.compiled import LossModule, TrainingStep  # noqa: E402
from onet.training.trainer import make_optimizer  # noqa: E402
from onet.utils.device import keep_freed_memory  # noqa: E402
from onet.utils.precision import autocast, slow_bf16  # noqa: E402

CONFIGS = ["img", "pointcloud", "voxels", "unconditional"]
PRECISIONS = ("fp32", "bf16", "amp")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_time(fn, device: torch.device, repeats: int) -> float:
    """Best of `repeats` wall times of fn() (after one warm-up call)."""
    fn()
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 3) -> float:
    """FLOP/s of torch.mm on two (n, n) matrices of `dtype` (TF32 off for fp32: a true fp32 peak)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        t = _best_time(lambda: torch.mm(a, b, out=out), device, repeats)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return 2 * n**3 / t


def measure_peaks(devices: list[torch.device], peak_size: int | None = None) -> dict:
    """{(device type, dtype): FLOP/s} of square matmuls: fp32 and bf16 everywhere, plus fp16 on CUDA."""
    peaks = {}
    for dev in devices:
        n = peak_size or (8192 if dev.type == "cuda" else 2048)
        # bf16 only where it has hardware (emulated, one 2048^2 product takes a minute)
        dtypes = ([torch.float32] + ([torch.bfloat16] if not slow_bf16(dev) else [])
                  + ([torch.float16] if dev.type == "cuda" else []))
        for dtype in dtypes:
            peaks[dev.type, dtype] = matmul_peak(dev, dtype, n)
    return peaks


def random_batch(cfg: dict, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """p (B, T, 3), occ (B, T) and the observation for the config's input type, on `device`."""
    data = cfg["data"]
    T = data["points_subsample"]
    g = torch.Generator().manual_seed(0)
    p = torch.rand(batch_size, T, 3, generator=g) * 1.1 - 0.55
    occ = (p.norm(dim=-1) < 0.35).float()  # a ball: a realistic mix of inside and outside labels
    kind = data["input_type"]
    if kind == "img":
        s = data["img_size"]
        inputs = torch.rand(batch_size, 3, s, s, generator=g)
    elif kind == "pointcloud":
        inputs = torch.randn(batch_size, data["pointcloud_n"], 3, generator=g) * 0.3
    elif kind == "voxels":
        inputs = (torch.rand(batch_size, 32, 32, 32, generator=g) < 0.2).float()
    else:
        inputs = torch.empty(batch_size, 0)
    return p.to(device), occ.to(device), inputs.to(device)


def build(name: str, device: torch.device) -> tuple[dict, nn.Module]:
    """configs/<name>.yaml and its model in train mode on `device` (random init, no downloads)."""
    cfg = load_config(CONFIG_DIR / f"{name}.yaml")
    model_cfg = dict(cfg["model"])
    if "pretrained" in model_cfg["encoder_kwargs"]:  # random init: no download, same speed
        model_cfg["encoder_kwargs"] = {**model_cfg["encoder_kwargs"], "pretrained": False}
    torch.manual_seed(0)
    return cfg, build_model(model_cfg).to(device).train()


def nominal_flops(fn, model: nn.Module, scale: float) -> int:
    """FLOPs of every linear/matmul and convolution that fn() runs through the plain modules
    (decoder fast path off: its chunked matmuls do the same work), times `scale`."""
    fast = model.decoder.fast_path
    model.decoder.fast_path = False
    try:
        with FlopCounterMode(display=False) as counter:
            fn()
    finally:
        model.decoder.fast_path = fast
        model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops() * scale)


def measure_train_step(name: str, device: str | torch.device = "cpu", *, precision: str = "fp32",
                       batch_size: int | None = None, iters: int = 1, repeats: int = 2,
                       keep_freed: bool = True, compile: bool = False) -> dict:
    """Time one training step of configs/<name>.yaml on `device` as `onet train` runs it.

    precision: fp32, bf16 (train.precision=bf16) or amp (train.amp, CUDA only).
    batch_size: objects per step (default: the config's train.batch_size).
    keep_freed: on the CPU, keep freed memory mapped for the rest of the process, as `onet
        train` does (`keep_freed_memory`); False times glibc's default (a fresh process).
    compile: the step's forward and backward through torch.compile, as train.compile=true
        (the warm-up step compiles; on CUDA the step is replayed as a CUDA graph).
    Returns {"config", "device", "precision", "B", "T", "params", "seconds" (best of
    `repeats` averages over `iters` steps), "flops" (nominal forward + backward FLOPs
    of the step: every linear and convolution, encoder included),
    "decoder_seconds", "decoder_flops" (the decoder's forward + backward alone on a
    fixed code), "peak_gpu_mb" (CUDA), "compiled" (whether the step ran compiled), "compile_failure"
    (why not, where compiling failed) }.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    device = torch.device(device)
    if precision == "amp" and device.type != "cuda":
        raise ValueError("precision 'amp' (train.amp) is CUDA only; use bf16 on a CPU")
    if device.type == "cpu" and keep_freed:
        keep_freed_memory()
    cfg, model = build(name, device)
    B = batch_size or cfg["train"]["batch_size"]
    optimizer = make_optimizer(model, cfg["train"]["lr"], device)  # fused on the CPU, as `onet train`
    p, occ, inputs = random_batch(cfg, B, device)
    if precision == "amp":
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        context = lambda: torch.autocast(device.type, dtype=amp_dtype)  # noqa: E731
    else:
        amp_dtype = torch.bfloat16 if precision == "bf16" else None
        context = lambda: autocast(precision, device)  # noqa: E731
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    train_step = TrainingStep(LossModule(model), device, compile=compile, autocast=context, scaler=scaler, log=None)
    batch = {"points": p, "points.occ": occ, "inputs": inputs}

    def step():
        optimizer.zero_grad(set_to_none=True)
        train_step(batch)
        scaler.step(optimizer)
        scaler.update()

    def steps():
        for _ in range(iters):
            step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = _best_time(steps, device, repeats) / iters
    gpu_mb = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None

    # the decoder alone, forward + backward, on a fixed code (and latent)
    decoder = model.decoder
    with torch.no_grad():
        c = model.encode_inputs(inputs, batch_size=B).detach().float()
    z = torch.randn(B, model.z_dim, device=device) if model.z_dim > 0 else None

    def decoder_step(n: int = B):
        with context():
            logits = decoder(p[:n], None if z is None else z[:n], c[:n])
        nn.functional.binary_cross_entropy_with_logits(logits.float(), occ[:n], reduction="none").sum(-1).mean().backward()

    def decoder_steps():
        for _ in range(iters):
            decoder_step()

    decoder_seconds = _best_time(decoder_steps, device, repeats) / iters
    small = min(B, 2)  # FLOPs are linear in the batch: count on 2 objects, scale to B

    def small_step():
        loss, _ = model.compute_loss({"points": p[:small], "points.occ": occ[:small], "inputs": inputs[:small]})
        loss.backward()

    flops = nominal_flops(small_step, model, B / small)
    decoder_flops = nominal_flops(lambda: decoder_step(small), model, B / small)
    return {"config": name, "device": device.type, "precision": precision, "B": B, "T": p.shape[1],
            "params": count_parameters(model), "seconds": seconds, "flops": flops,
            "decoder_seconds": decoder_seconds, "decoder_flops": decoder_flops, "peak_gpu_mb": gpu_mb,
            "compiled": train_step.compiled, "compile_failure": train_step.failure}


def chunked_matmul_rate(B: int = 64, T: int = 2048, H: int = 256, units: int = 10, repeats: int = 2) -> float:
    """FLOP/s of the fused CPU decoder's matmuls alone: forward, weight- and input-gradient
    products of `units` H x H layers over the chunks it uses (models/fused.py's chunk plan), with
    the (B, T, H) activations in memory as in training and no elementwise work at all. The
    ceiling for any decoder built from torch ops in this chunking: what the chunks' products
    reach while their operands stream from memory (fp32, CPU)."""
    from onet.models.fused import chunk_plan, default_chunk_rows, native

    plan = chunk_plan(B, T, default_chunk_rows(H, native() is not None))  # the fp32 path's chunks
    acts = [torch.randn(B, T, H) for _ in range(3)]
    weight, bias = torch.randn(H, H) / H ** 0.5, torch.zeros(H)
    rows = max((b1 - b0) * (t1 - t0) for b0, b1, t0, t1 in plan)
    a, da = torch.randn(rows, H), torch.empty(rows, H)

    def layers():
        for u in range(units):  # forward: chunk of the previous output -> chunk of this one
            x, out = acts[u % 3], acts[(u + 1) % 3]
            for b0, b1, t0, t1 in plan:
                n = (b1 - b0) * (t1 - t0)
                torch.addmm(bias, x[b0:b1, t0:t1].reshape(n, H), weight, out=out[b0:b1, t0:t1].reshape(n, H))
        dw = torch.zeros(H, H)
        for u in range(units):  # backward: dW += a^T dy, dx = dy W, dy streamed from memory
            dy = acts[u % 3]
            for b0, b1, t0, t1 in plan:
                n = (b1 - b0) * (t1 - t0)
                dyc = dy[b0:b1, t0:t1].reshape(n, H)
                dw.addmm_(a[:n].t(), dyc)
                torch.mm(dyc, weight, out=da[:n])

    seconds = _best_time(layers, torch.device("cpu"), repeats)
    return 3 * units * 2 * B * T * H * H / seconds


def with_peak(r: dict, peaks: dict) -> dict:
    """The measurement with its rates against the fp32 matmul peak of its device."""
    peak = peaks[r["device"], torch.float32]
    return dict(r, **{
        "it/s": 1 / r["seconds"], "points/s": r["B"] * r["T"] / r["seconds"],
        "GFLOP/s": r["flops"] / r["seconds"] / 1e9,
        "step/bound": r["seconds"] / (r["flops"] / peak),
        "dec share": r["decoder_seconds"] / r["seconds"],
        "dec GFLOP/s": r["decoder_flops"] / r["decoder_seconds"] / 1e9,
        "dec % fp32 peak": 100 * r["decoder_flops"] / r["decoder_seconds"] / peak,
    })


def print_table(rows: list[dict]) -> None:
    cols = [("config", "{:<13}"), ("device", "{:<6}"), ("precision", "{:<9}"), ("params", "{:>6.1f}M"),
            ("B", "{:>4}"), ("T", "{:>5}"), ("it/s", "{:>8.3f}"), ("points/s", "{:>10.0f}"),
            ("GFLOP/s", "{:>8.1f}"), ("step/bound", "{:>10.2f}"), ("dec share", "{:>9.0%}"),
            ("dec GFLOP/s", "{:>11.1f}"), ("dec % fp32 peak", "{:>15.1f}")]
    head = []
    for k, fmt in cols:
        width = len(fmt.format(0 if k not in ("config", "device", "precision") else ""))
        head.append(f"{k:<{max(width, len(k))}}" if k in ("config", "device", "precision") else f"{k:>{max(width, len(k))}}")
    print("  ".join(head))
    for r in rows:
        cells = []
        for (k, fmt), h in zip(cols, head):
            v = r[k] / 1e6 if k == "params" else r[k]
            text = fmt.format(v)
            cells.append(f"{text:<{len(h)}}" if k in ("config", "device", "precision") else f"{text:>{len(h)}}")
        print("  ".join(cells), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=CONFIGS, help="configs to time")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="objects per step (default: the config's train.batch_size, 64 as in the paper)")
    parser.add_argument("--iters", type=int, default=2, help="timed steps per measurement (default 2)")
    parser.add_argument("--repeats", type=int, default=2, help="measurements, best kept (default 2)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto: CPU, and CUDA too when a GPU is present")
    parser.add_argument("--precision", nargs="+", choices=PRECISIONS, default=None,
                        help="precisions to time (default: fp32 bf16 on the CPU; fp32 amp bf16 on CUDA)")
    parser.add_argument("--peak-size", type=int, default=None,
                        help="side of the square matmul for the peak (default 2048 on CPU, 8192 on CUDA)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--compile", action="store_true",
                        help="also time each step through torch.compile (train.compile=true), beside the eager one")
    parser.add_argument("--system-malloc", action="store_true",
                        help="time with glibc's default allocation (onet train keeps freed memory mapped on the CPU)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    devices = []
    if args.device in ("auto", "cpu"):
        devices.append(torch.device("cpu"))
    if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            parser.error("--device cuda but no CUDA GPU is available")
        devices.append(torch.device("cuda"))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          + ("glibc's default allocation" if args.system_malloc else "freed memory kept mapped (as onet train)")
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    peaks = measure_peaks(devices, args.peak_size)
    for (dev_type, dtype), peak in peaks.items():
        print(f"matmul peak {dev_type} {str(dtype).replace('torch.', '')}: {peak / 1e9:.1f} GFLOP/s")
    if torch.device("cpu") in devices:
        rate = chunked_matmul_rate()
        print(f"decoder matmuls alone in the fused path's chunks (B=64, H=256, operands in memory): "
              f"{rate / 1e9:.1f} GFLOP/s = {100 * rate / peaks['cpu', torch.float32]:.1f}% of the fp32 peak")
    print()

    rows = []
    for dev in devices:
        slow = slow_bf16(dev)
        if args.precision is None:
            precisions = ["fp32"] + (["amp"] if dev.type == "cuda" else []) + ([] if slow else ["bf16"])
            if slow:
                print(f"bf16 not timed on {dev.type}: {slow} (ask for it with --precision bf16)")
        else:
            precisions = args.precision
        for precision in precisions:
            if precision == "amp" and dev.type != "cuda":
                continue
            for name in args.configs:
                for compiled in (False, True) if args.compile else (False,):
                    try:
                        r = measure_train_step(name, dev, precision=precision, batch_size=args.batch_size,
                                               iters=args.iters, repeats=args.repeats,
                                               keep_freed=not args.system_malloc, compile=compiled)
                    except ConfigError as exc:  # report and go on: the other configs are still worth timing
                        print(f"skipped {name}: {exc}", flush=True)
                        break
                    if compiled and not r["compiled"]:
                        print(f"{name} {precision}: torch.compile failed, timed eagerly ({r['compile_failure']})")
                    rows.append(with_peak(dict(r, precision=precision + ("+c" if r["compiled"] else "")), peaks))
    print_table(rows)
    print("\nstep/bound: step time / (forward + backward FLOPs of every linear and convolution at the fp32 peak)")
    print("dec share: decoder forward+backward time / whole training step (encoder, loss, Adam included)")
    if args.compile:
        print("+c: the step through torch.compile (train.compile=true; the decoder-alone columns stay eager)")


def _fig(stage: str, figure: str, value, unit: str, note: str = "", reduced: str = "") -> dict:
    row = {"stage": stage, "figure": figure, "value": value, "unit": unit, "note": note}
    return dict(row, reduced=reduced) if reduced else row


def run(quick: bool = False, device: str = "cpu") -> list[dict]:
    """Training figures as rows {stage, figure, value, unit, note}: for img, pointcloud and
    voxels on CPU in fp32 and bf16 (and on CUDA in fp32 and amp when device is "cuda"):
    it/s at the paper's batch size (quick: 4 on CPU), the step time against its FLOP bound
    (encoder and decoder), the decoder's forward + backward as a share of the fp32 matmul
    peak, and the bf16 / fp32 speed ratio."""
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if device == "cuda" else [])
    peaks = measure_peaks(devices)
    slow = slow_bf16(torch.device("cpu"))
    bf16_peak = peaks.get(("cpu", torch.bfloat16))
    rows = [_fig("train", "fp32 matmul peak, 2048^2, CPU", peaks["cpu", torch.float32] / 1e9, "GFLOP/s"),
            _fig("train", "bf16 matmul peak, 2048^2, CPU", bf16_peak and bf16_peak / 1e9, "GFLOP/s",
                 f"not measured: {slow}" if slow else ""),
            _fig("train", "decoder matmuls alone, fused chunks, B=64, % of fp32 peak, CPU",
                 100 * chunked_matmul_rate() / peaks["cpu", torch.float32], "%",
                 "the ceiling of the decoder row below: its products with nothing else, operands in memory")]
    for dev in devices:
        precisions = (["fp32"] + ([] if slow else ["bf16"])) if dev.type == "cpu" else ["fp32", "amp"]
        batch = 4 if quick and dev.type == "cpu" else None
        reduced = "--quick times B=4; the aims are for the paper's B=64" if batch else ""
        iters, repeats = (1, 1) if quick else (1, 2)
        for name in ("img", "pointcloud", "voxels"):
            measured = {}
            for precision in precisions:
                try:
                    r = with_peak(measure_train_step(name, dev, precision=precision, batch_size=batch,
                                                     iters=iters, repeats=repeats), peaks)
                except ConfigError as exc:
                    rows.append(_fig("train", f"{name} it/s", None, "it/s", f"skipped: {exc}"))
                    break
                measured[precision] = r
                where = f"{dev.type.upper()} {precision}, B={r['B']}"
                rows.append(_fig("train", f"{name} it/s, {where}", r["it/s"], "it/s",
                                 f"{r['points/s']:.0f} points/s, {r['GFLOP/s']:.0f} GFLOP/s"))
                if precision == "fp32":
                    rows += [
                        _fig("train", f"{name} decoder fwd+bwd % of fp32 matmul peak, {where}", r["dec % fp32 peak"],
                             "%", f"{r['dec GFLOP/s']:.1f} GFLOP/s; decoder {r['dec share']:.0%} of the step", reduced),
                        _fig("train", f"{name} train step / FLOP bound, {where}", r["step/bound"], "x",
                             f"{r['flops'] / 1e9:.0f} GFLOP per step (encoder + decoder, fwd + bwd)", reduced),
                    ]
            if dev.type == "cpu" and slow:
                rows.append(_fig("train", f"{name} bf16/fp32 step speed, CPU", None, "x", f"not measured: {slow}"))
            if len(measured) == 2:
                fast = [p for p in measured if p != "fp32"][0]
                ratio = measured["fp32"]["seconds"] / measured[fast]["seconds"]
                rows.append(_fig("train", f"{name} {fast}/fp32 step speed, {dev.type.upper()}, "
                                          f"B={measured['fp32']['B']}", ratio, "x",
                                 f"fp32 {measured['fp32']['seconds']:.2f} s, {fast} {measured[fast]['seconds']:.2f} s",
                                 reduced))
            if dev.type == "cuda" and "fp32" in measured and measured["fp32"]["peak_gpu_mb"] is not None:
                rows.append(_fig("train", f"{name} peak GPU memory, CUDA fp32", measured["fp32"]["peak_gpu_mb"], "MB"))
    return rows


if __name__ == "__main__":
    main()

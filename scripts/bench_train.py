"""Benchmark training throughput of the thesis models, and the decoder's share of the matmul peak.

    python scripts/bench_train.py                              # paper batch sizes (64), CPU and CUDA
    python scripts/bench_train.py --batch-size 4 --iters 3     # a quick look on a CPU
    python scripts/bench_train.py --configs img voxels --device cuda --amp both

For each config (configs/<name>.yaml, the full thesis models) one training
step is Adam on the config's loss over random tensors of the right shapes:
occupancy points (B, T, 3) with T = data.points_subsample (2048; 1024 for
voxels) and the observation (images (B, 3, 224, 224), point clouds (B, 300, 3),
voxels (B, 32, 32, 32), nothing for the unconditional VAE). No dataset or data
loading is involved: this is the model's own speed.

Columns: iterations/s and occupancy points/s of the whole step; then the
decoder alone (forward + backward of the decoder on a fixed code c): its
matmul FLOP rate and that rate as a fraction of the fp32 matmul peak measured
in the same run (torch.mm of two square matrices; --peak-size). Decoder FLOPs
are counted from the shapes of every nn.Linear call in one decoder forward
(2 * in * out per row), and forward + backward is taken as 3x forward. AMP rows
also give the fraction of the low-precision (bf16/fp16) matmul peak. ImageNet
weights are never loaded (random init: same speed). Prints a table; never
asserts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from onet.config import CONFIG_DIR, ConfigError, load_config  # noqa: E402
from onet.models import build_model, count_parameters  # noqa: E402

CONFIGS = ["img", "pointcloud", "voxels", "unconditional"]


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


def decoder_forward_flops(decoder: nn.Module, *args) -> int:
    """Matmul FLOPs of one decoder forward: 2 * in * out per row of every nn.Linear call."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        rows = inputs[0].numel() // module.in_features
        total += 2 * rows * module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in decoder.modules() if isinstance(m, nn.Linear)]
    try:
        with torch.no_grad():
            decoder(*args)
    finally:
        for h in handles:
            h.remove()
    return total


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


def bench_config(name: str, device: torch.device, amp: bool, batch_size: int | None, iters: int,
                 repeats: int, peaks: dict) -> dict:
    cfg = load_config(CONFIG_DIR / f"{name}.yaml")
    model_cfg = dict(cfg["model"])
    if "pretrained" in model_cfg["encoder_kwargs"]:  # random init: no download, same speed
        model_cfg["encoder_kwargs"] = {**model_cfg["encoder_kwargs"], "pretrained": False}
    B = batch_size or cfg["train"]["batch_size"]
    torch.manual_seed(0)
    model = build_model(model_cfg).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["train"]["lr"])
    p, occ, inputs = random_batch(cfg, B, device)
    amp_dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
            loss, _ = model.compute_loss({"points": p, "points.occ": occ, "inputs": inputs})
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def steps():
        for _ in range(iters):
            step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t_step = _best_time(steps, device, repeats) / iters
    gpu_mb = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None

    # the decoder alone, forward + backward, on a fixed code (and latent)
    decoder = model.decoder
    with torch.no_grad():
        c = model.encode_inputs(inputs, batch_size=B).detach()
    z = torch.randn(B, model.z_dim, device=device) if model.z_dim > 0 else None

    def decoder_step():
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
            logits = decoder(p, z, c)
            loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), occ, reduction="none").sum(-1).mean()
        loss.backward()

    def decoder_steps():
        for _ in range(iters):
            decoder_step()

    t_dec = _best_time(decoder_steps, device, repeats) / iters
    flops = 3 * decoder_forward_flops(decoder, p, z, c)
    T = p.shape[1]
    row = {
        "config": name, "device": device.type, "amp": "bf16" if amp and amp_dtype == torch.bfloat16 else
        ("fp16" if amp else "fp32"), "params": count_parameters(model), "B": B, "T": T,
        "it/s": 1 / t_step, "points/s": B * T / t_step, "dec share": t_dec / t_step,
        "dec GFLOP/s": flops / t_dec / 1e9, "% fp32 peak": 100 * flops / t_dec / peaks[device.type, torch.float32],
        "% amp peak": 100 * flops / t_dec / peaks[device.type, amp_dtype] if amp else None,
        # the step against the decoder's FLOP bound: its forward + backward FLOPs at the matmul peak
        "step/bound": t_step / (flops / peaks[device.type, amp_dtype if amp else torch.float32]),
        "peak GPU MB": gpu_mb,
    }
    return row


def print_table(rows: list[dict]) -> None:
    cols = [("config", "{:<13}"), ("device", "{:<6}"), ("amp", "{:<4}"), ("params", "{:>6.1f}M"), ("B", "{:>4}"),
            ("T", "{:>5}"), ("it/s", "{:>8.2f}"), ("points/s", "{:>10.0f}"), ("dec share", "{:>9.0%}"),
            ("dec GFLOP/s", "{:>11.1f}"), ("% fp32 peak", "{:>11.1f}"), ("% amp peak", "{:>10}"),
            ("step/bound", "{:>10.1f}")]
    widths = [len(fmt.format(0 if k not in ("config", "device", "amp", "% amp peak") else "")) for k, fmt in cols]
    print("  ".join(f"{k:>{w}}" if i > 2 else f"{k:<{w}}" for i, ((k, _), w) in enumerate(zip(cols, widths))))
    for r in rows:
        cells = []
        for k, fmt in cols:
            v = r[k]
            if k == "params":
                v = v / 1e6
            if k == "% amp peak":
                v = "-" if v is None else f"{v:.1f}"
            cells.append(fmt.format(v))
        print("  ".join(cells), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=CONFIGS, help="configs to time")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="objects per step (default: the config's train.batch_size, 64 as in the paper)")
    parser.add_argument("--iters", type=int, default=5, help="timed steps per measurement (default 5)")
    parser.add_argument("--repeats", type=int, default=2, help="measurements, best kept (default 2)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto: CPU, and CUDA too when a GPU is present")
    parser.add_argument("--amp", choices=["off", "on", "both"], default="both",
                        help="mixed precision on CUDA rows (CPU rows are always fp32; default both)")
    parser.add_argument("--peak-size", type=int, default=None,
                        help="side of the square matmul for the peak (default 2048 on CPU, 8192 on CUDA)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
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

    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""))
    peaks = measure_peaks(devices, args.peak_size)
    for (dev_type, dtype), peak in peaks.items():
        print(f"matmul peak {dev_type} {str(dtype).replace('torch.', '')}: {peak / 1e9:.1f} GFLOP/s")
    print()

    rows = []
    for dev in devices:
        amps = [False] if dev.type == "cpu" else {"off": [False], "on": [True], "both": [False, True]}[args.amp]
        for amp in amps:
            for name in args.configs:
                try:
                    rows.append(bench_config(name, dev, amp, args.batch_size, args.iters, args.repeats, peaks))
                except ConfigError as exc:  # report and go on: the other configs are still worth timing
                    print(f"skipped {name}: {exc}", flush=True)
    print_table(rows)
    print("\ndec share: decoder forward+backward time / whole training step (encoder, loss, Adam included)")
    print("step/bound: step time / (decoder forward+backward FLOPs at the matmul peak of the row's precision)")


def _fig(stage: str, figure: str, value, unit: str, note: str = "") -> dict:
    return {"stage": stage, "figure": figure, "value": value, "unit": unit, "note": note}


def measure_peaks(devices: list[torch.device], peak_size: int | None = None) -> dict:
    """{(device type, dtype): FLOP/s} of square matmuls: fp32 everywhere, plus bf16/fp16 on CUDA."""
    peaks = {}
    for dev in devices:
        n = peak_size or (8192 if dev.type == "cuda" else 2048)
        dtypes = [torch.float32]
        if dev.type == "cuda":
            dtypes.append(torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
        for dtype in dtypes:
            peaks[dev.type, dtype] = matmul_peak(dev, dtype, n)
    return peaks


def run(quick: bool = False, device: str = "cpu") -> list[dict]:
    """Training figures as rows {stage, figure, value, unit, note}: for img, pointcloud and
    voxels on CPU (and on CUDA with and without AMP when device is "cuda"), it/s and
    points/s at the paper's batch size (quick: 4 on CPU), the decoder's share of the fp32
    matmul peak and the step time against the decoder's FLOP bound."""
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if device == "cuda" else [])
    peaks = measure_peaks(devices)
    rows = [_fig("train", "fp32 matmul peak, 2048^2, CPU", peaks["cpu", torch.float32] / 1e9, "GFLOP/s")]
    for dev in devices:
        amps = [False] if dev.type == "cpu" else [False, True]
        batch = 4 if quick and dev.type == "cpu" else None
        iters, repeats = (1, 1) if quick else (1, 2)
        for amp in amps:
            for name in ("img", "pointcloud", "voxels"):
                try:
                    r = bench_config(name, dev, amp, batch, iters, repeats, peaks)
                except ConfigError as exc:
                    rows.append(_fig("train", f"{name} it/s", None, "it/s", f"skipped: {exc}"))
                    continue
                where = f"{r['device'].upper()} {r['amp']}, B={r['B']}"
                rows += [
                    _fig("train", f"{name} it/s, {where}", r["it/s"], "it/s", f"{r['points/s']:.0f} points/s"),
                    _fig("train", f"{name} decoder % of {'fp32' if not amp else r['amp']} matmul peak, {where}",
                         r["% amp peak"] if amp else r["% fp32 peak"], "%", f"{r['dec GFLOP/s']:.1f} GFLOP/s"),
                    _fig("train", f"{name} train step time / decoder FLOP bound, {where}", r["step/bound"], "x",
                         f"decoder {r['dec share']:.0%} of the step"),
                ]
                if r["peak GPU MB"] is not None:
                    rows.append(_fig("train", f"{name} peak GPU memory, {where}", r["peak GPU MB"], "MB"))
    return rows


if __name__ == "__main__":
    main()

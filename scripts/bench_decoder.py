"""Benchmark of the fast decoder path against the fp32 matmul peak.

    python scripts/bench_decoder.py [--n-points 100000] [--batch 1 2 4 8] [--repeats 3] [--threads T] [--clock wall|cpu]
                                    [--device cpu|cuda] [--precision fp32|bf16]

Prints the GFLOP/s of a (N, 256) x (256, 256) matmul, and of the same work
done as (2048, 256) x (256, 256) blocks (the "peak" the decoder can reach: its
work is almost all such matmuls; % peak uses the better of the two), and the achieved GFLOP/s of
`make_eval_fn` and of plain `decode` for the default CBN-ResNet decoder
(hidden 256, 5 blocks, c_dim 256), counting only the decoder's linear layers,
on --device in --precision (bf16: bf16 matmul inputs, against the bf16 peak).
"""

from __future__ import annotations

import argparse
import time

import torch

from onet.models.decoders import CBNResnetDecoder
from onet.utils.precision import slow_bf16


def _timed(fn, clock) -> float:
    t0 = clock()
    fn()
    return clock() - t0


def decoder_flops_per_point(dim: int = 3, hidden: int = 256, n_blocks: int = 5) -> int:
    """Multiply-adds x 2 of fc_p, the 2 * n_blocks hidden linears and fc_out."""
    return 2 * (dim * hidden + 2 * n_blocks * hidden * hidden + hidden)


def make_decoder(device: str | torch.device = "cpu") -> CBNResnetDecoder:
    """The default CBN-ResNet decoder in eval mode on `device`, with non-trivial gamma/beta and running statistics."""
    torch.manual_seed(0)
    dec = CBNResnetDecoder(c_dim=256)
    with torch.no_grad():
        for m in dec.modules():
            if hasattr(m, "gamma"):
                m.gamma.weight.normal_(0, 0.02)
                m.beta.weight.normal_(0, 0.02)
                m.bn.running_mean.normal_(0, 0.5)
                m.bn.running_var.uniform_(0.5, 2.0)
    return dec.to(device).eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(dec: CBNResnetDecoder, B: int, N: int, repeats: int, clock=time.perf_counter, *,
            precision: str = "fp32") -> dict:
    """Seconds of make_eval_fn on (B, N, 3) points and the matmul peaks (GFLOP/s), best of `repeats`,
    on the decoder's device.

    The machine may be shared: the peak matmuls are timed interleaved with each
    decoder run, so the ratio compares like with like. Peak = the better of one
    (N, 256) x (256, 256) matmul and the same work done as (2048, 256) x (256, 256)
    matmuls (the cache-sized blocks the CPU fast path uses), in the precision's dtype
    (bf16: bf16 inputs; TF32 off for fp32 on CUDA)."""
    device = dec.fc_p.weight.device
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a = torch.randn(N, 256, device=device).to(dtype)
    w = torch.randn(256, 256, device=device).to(dtype)
    out = torch.empty(N, 256, device=device, dtype=dtype)
    rows = min(2048, N)
    a_s, out_s = a[:rows].contiguous(), out[:rows]

    def timed(fn):
        _sync(device)
        t0 = clock()
        fn()
        _sync(device)
        return clock() - t0

    def mm_big():
        torch.mm(a, w, out=out)

    def mm_small():
        for _ in range(N // rows):
            torch.mm(a_s, w, out=out_s)

    c = torch.randn(B, 256, device=device)
    p = torch.rand(B, N, 3, device=device) - 0.5
    fn = dec.make_eval_fn(c, precision=precision)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        fn(p)
        mm_small()
        t_fast = t_big = t_small = float("inf")
        for _ in range(repeats):
            t_big = min(t_big, timed(mm_big))
            t_small = min(t_small, timed(mm_small) * N / (N // rows * rows))
            t_fast = min(t_fast, timed(lambda: fn(p)))
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    gflops = B * N * decoder_flops_per_point() / t_fast / 1e9
    peak_big = 2 * N * 256 * 256 / t_big / 1e9
    peak_small = 2 * N * 256 * 256 / t_small / 1e9
    return {"B": B, "N": N, "t_fast": t_fast, "gflops": gflops, "peak_big": peak_big, "peak_small": peak_small,
            "pct": 100 * gflops / max(peak_big, peak_small), "p": p, "c": c}


def run(quick: bool = False, device: str = "cpu") -> list[dict]:
    """Decoder figures as rows {stage, figure, value, unit, note}: make_eval_fn on 100k points
    of one object on the CPU in fp32 (against the interleaved fp32 matmul peak) and bf16 (its
    speed against fp32); with device "cuda", the same on the GPU for a batch of 32 objects."""
    # best of several short runs: on a shared machine the best is the one least disturbed
    repeats = 5 if quick else 10
    rows = []
    for dev in ["cpu"] + (["cuda"] if device == "cuda" else []):
        B, N = (1, 100_000) if dev == "cpu" else (32, 100_000)
        dec = make_decoder(dev)
        r = measure(dec, B, N, repeats)
        # bf16 is timed only where it has hardware: emulated, it takes minutes and says nothing
        slow = slow_bf16(torch.device(dev))
        rb = None if slow else measure(dec, B, N, repeats, precision="bf16")
        where = f"{dev.upper()}, {B} x {N // 1000}k points"
        rows += [
            {"stage": "decoder", "figure": f"decoder % of matmul peak (make_eval_fn, {where})", "value": r["pct"],
             "unit": "%", "note": f"{r['gflops']:.1f} of {max(r['peak_big'], r['peak_small']):.1f} GFLOP/s"},
            {"stage": "decoder", "figure": f"decoder bf16/fp32 speed (make_eval_fn, {where})",
             "value": None if rb is None else r["t_fast"] / rb["t_fast"], "unit": "x",
             "note": f"not measured: {slow}" if rb is None else
             f"bf16 {rb['gflops']:.1f} GFLOP/s = {rb['pct']:.0f}% of the bf16 matmul peak"},
        ]
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-points", type=int, default=100_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: process CPU time, steadier on a shared machine (use with --threads 1)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--slow", action="store_true", help="also time plain decode()")
    args = parser.parse_args(argv)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA GPU")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.device}, {args.precision}")
    slow = slow_bf16(torch.device(args.device)) if args.precision == "bf16" else None
    if slow:
        print(f"warning: {slow}; this will take long")
    dec = make_decoder(args.device)
    header = f"{'B':>3} {'points':>9} {'fast s':>8} {'GFLOP/s':>8} {'mm N':>7} {'mm 2048':>8} {'% peak':>7}"
    print(header + ("  decode s" if args.slow else ""))
    for B in args.batch:
        r = measure(dec, B, args.n_points, args.repeats, clock, precision=args.precision)
        line = (f"{B:>3} {B * args.n_points:>9} {r['t_fast']:>8.3f} {r['gflops']:>8.1f} {r['peak_big']:>7.1f}"
                f" {r['peak_small']:>8.1f} {r['pct']:>6.1f}%")
        if args.slow:
            p, c = r["p"], r["c"]

            def slow():
                with torch.inference_mode():
                    dec(p, None, c)
            line += f"  {_timed(slow, clock):>8.3f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()

"""Benchmark of the fast decoder path against the fp32 matmul peak.

    python -m onet.models.benchmark [--n-points 100000] [--batch 1 2 4 8] [--repeats 3]

Prints the GFLOP/s of a (N, 256) x (256, 256) matmul (the "peak" the decoder
can reach: its work is almost all such matmuls), and the achieved GFLOP/s of
`make_eval_fn` and of plain `decode` for the default CBN-ResNet decoder
(hidden 256, 5 blocks, c_dim 256), counting only the decoder's linear layers.
"""

from __future__ import annotations

import argparse
import time

import torch

from onet.models.decoders import CBNResnetDecoder


def _best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def decoder_flops_per_point(dim: int = 3, hidden: int = 256, n_blocks: int = 5) -> int:
    """Multiply-adds x 2 of fc_p, the 2 * n_blocks hidden linears and fc_out."""
    return 2 * (dim * hidden + 2 * n_blocks * hidden * hidden + hidden)


def matmul_peak(n_rows: int, hidden: int = 256, repeats: int = 3) -> float:
    """GFLOP/s of (n_rows, hidden) x (hidden, hidden) into a preallocated output."""
    a = torch.randn(n_rows, hidden)
    w = torch.randn(hidden, hidden)
    out = torch.empty(n_rows, hidden)
    t = _best_time(lambda: torch.mm(a, w, out=out), repeats)
    return 2 * n_rows * hidden * hidden / t / 1e9


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-points", type=int, default=100_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slow", action="store_true", help="also time plain decode()")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    N = args.n_points
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    peak_big = matmul_peak(N, repeats=args.repeats)
    peak_small = matmul_peak(2048, repeats=20 * args.repeats)
    peak = max(peak_big, peak_small)
    print(f"matmul (N,256)x(256,256): N={N}: {peak_big:.1f} GFLOP/s, N=2048: {peak_small:.1f} GFLOP/s")

    dec = CBNResnetDecoder(c_dim=256)
    with torch.no_grad():  # non-trivial gamma/beta and running statistics
        for m in dec.modules():
            if hasattr(m, "gamma"):
                m.gamma.weight.normal_(0, 0.02)
                m.beta.weight.normal_(0, 0.02)
                m.bn.running_mean.normal_(0, 0.5)
                m.bn.running_var.uniform_(0.5, 2.0)
    dec.eval()
    flops = decoder_flops_per_point()
    print(f"{'B':>3} {'points':>9} {'fast s':>8} {'GFLOP/s':>8} {'% peak':>7}" + ("  decode s" if args.slow else ""))
    for B in args.batch:
        c = torch.randn(B, 256)
        p = torch.rand(B, N, 3) - 0.5
        fn = dec.make_eval_fn(c)
        t = _best_time(lambda: fn(p), args.repeats)
        gflops = B * N * flops / t / 1e9
        line = f"{B:>3} {B * N:>9} {t:>8.3f} {gflops:>8.1f} {100 * gflops / peak:>6.1f}%"
        if args.slow:
            def slow():
                with torch.inference_mode():
                    dec(p, None, c)
            line += f"  {_best_time(slow, 1):>8.3f}"
        print(line)


if __name__ == "__main__":
    main()

"""Benchmark of the fast decoder path against the fp32 matmul peak.

    python scripts/bench_decoder.py [--n-points 100000] [--batch 1 2 4 8] [--repeats 3] [--threads T] [--clock wall|cpu]

Prints the GFLOP/s of a (N, 256) x (256, 256) matmul, and of the same work
done as (2048, 256) x (256, 256) blocks (the "peak" the decoder can reach: its
work is almost all such matmuls; % peak uses the better of the two), and the achieved GFLOP/s of
`make_eval_fn` and of plain `decode` for the default CBN-ResNet decoder
(hidden 256, 5 blocks, c_dim 256), counting only the decoder's linear layers.
"""

from __future__ import annotations

import argparse
import time

import torch

from onet.models.decoders import CBNResnetDecoder

def _timed(fn, clock) -> float:
    t0 = clock()
    fn()
    return clock() - t0


def decoder_flops_per_point(dim: int = 3, hidden: int = 256, n_blocks: int = 5) -> int:
    """Multiply-adds x 2 of fc_p, the 2 * n_blocks hidden linears and fc_out."""
    return 2 * (dim * hidden + 2 * n_blocks * hidden * hidden + hidden)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-points", type=int, default=100_000)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="cpu: process CPU time, steadier on a shared machine (use with --threads 1)")
    parser.add_argument("--slow", action="store_true", help="also time plain decode()")
    args = parser.parse_args(argv)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    N = args.n_points
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
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
    # The machine may be shared: the peak matmuls are timed interleaved with each
    # decoder run (best of `repeats` each), so the ratio compares like with like.
    # Peak = the better of one (N, 256) x (256, 256) matmul and the same work done
    # as (2048, 256) x (256, 256) matmuls (the cache-sized blocks the fast path uses).
    a = torch.randn(N, 256)
    w = torch.randn(256, 256)
    out = torch.empty(N, 256)
    rows = min(2048, N)
    a_s, out_s = a[:rows].contiguous(), out[:rows]

    def mm_big():
        torch.mm(a, w, out=out)

    def mm_small():
        for _ in range(N // rows):
            torch.mm(a_s, w, out=out_s)

    header = f"{'B':>3} {'points':>9} {'fast s':>8} {'GFLOP/s':>8} {'mm N':>7} {'mm 2048':>8} {'% peak':>7}"
    print(header + ("  decode s" if args.slow else ""))
    for B in args.batch:
        c = torch.randn(B, 256)
        p = torch.rand(B, N, 3) - 0.5
        fn = dec.make_eval_fn(c)
        fn(p)
        mm_small()
        t_fast = t_big = t_small = float("inf")
        for _ in range(args.repeats):
            t_big = min(t_big, _timed(mm_big, clock))
            t_small = min(t_small, _timed(mm_small, clock) * N / (N // rows * rows))
            t_fast = min(t_fast, _timed(lambda: fn(p), clock))
        gflops = B * N * flops / t_fast / 1e9
        peak_big = 2 * N * 256 * 256 / t_big / 1e9
        peak_small = 2 * N * 256 * 256 / t_small / 1e9
        peak = max(peak_big, peak_small)
        line = (f"{B:>3} {B * N:>9} {t_fast:>8.3f} {gflops:>8.1f} {peak_big:>7.1f} {peak_small:>8.1f}"
                f" {100 * gflops / peak:>6.1f}%")
        if args.slow:
            def slow():
                with torch.inference_mode():
                    dec(p, None, c)
            line += f"  {_timed(slow, clock):>8.3f}"
        print(line, flush=True)

if __name__ == "__main__":
    main()

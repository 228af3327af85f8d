"""Option checking and dispatch for `onet gan dirac|toy|bench2d` (the CLI only parses arguments).

Bad options raise UsageError naming the option, so the CLI exits 2.
"""

from __future__ import annotations

import math

from onet.utils.errors import UsageError


def _nonneg(name: str, value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"{name} must be a finite number >= 0, got {value:g}")
    return value


def _positive(name: str, value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise UsageError(f"{name} must be a finite number > 0, got {value:g}")
    return value


def _count(name: str, value: int, lo: int = 1, hi: int | None = None) -> int:
    if value < lo or (hi is not None and value > hi):
        raise UsageError(f"{name} must be an integer in [{lo}, {hi if hi is not None else 'inf'}], got {value}")
    return value


def parse_names(option: str, text: str | None, known) -> list[str]:
    """'a,b' -> ['a', 'b'], each checked against `known` (None or 'all': all of them)."""
    known = list(known)
    if text is None or text.strip() == "all":
        return known
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise UsageError(f"{option}: unknown name(s) {', '.join(bad) or repr(text)}; choose from {', '.join(known)}")
    return list(dict.fromkeys(names))


def run_gan(args) -> int:
    if args.game == "dirac":
        from onet.gan.dirac import METHODS, run_dirac
        methods = parse_names("--methods", args.methods, METHODS)
        run_dirac(methods, dim=_count("--dim", args.dim, 1, 4096), gamma=_nonneg("--gamma", args.gamma),
                  sigma=_nonneg("--sigma", args.sigma), eta=_nonneg("--eta", args.eta), h=_positive("--h", args.h),
                  steps=_count("--steps", args.steps, 0), n_d=_count("--n-d", args.n_d), out_dir=args.out,
                  progress=not args.no_progress)
        return 0
    if args.game == "toy":
        from onet.gan.toy import run_toy
        w, h = (_positive("--target", v) for v in args.target)
        run_toy(args.name, reg=args.reg, gamma=_nonneg("--gamma", args.gamma), h=_positive("--h", args.h),
                steps=_count("--steps", args.steps, 1), scheme=args.scheme, loss=args.loss, width=w, height=h,
                out_dir=args.out)
        return 0
    if args.game == "bench2d":
        from onet.gan.bench2d import DISTRIBUTIONS, METHODS, run_bench2d
        run_bench2d(quick=args.quick, out_dir=args.out, device=args.device,
                    methods=parse_names("--methods", args.methods, METHODS),
                    distributions=parse_names("--distributions", args.distributions, DISTRIBUTIONS),
                    iters=None if args.iters is None else _count("--iters", args.iters, 10),
                    seed=args.seed, progress=not args.no_progress, compile=args.compile)
        return 0
    raise UsageError(f"unknown game {args.game}")

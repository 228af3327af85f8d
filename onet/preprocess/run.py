"""`onet preprocess`: command-line arguments -> PreprocessOptions -> preprocess_dataset."""

from __future__ import annotations

from onet.preprocess.pipeline import PreprocessOptions, preprocess_dataset
from onet.utils.ranks import parse_shard


def parse_sigma(text: str) -> tuple[float, ...]:
    """'0.01' -> (0.01,); '0.01,0.05' -> (0.01, 0.05)."""
    from onet.utils.errors import UsageError
    try:
        sigma = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise UsageError(f"--near-sigma must be one or two numbers separated by a comma (e.g. 0.01,0.05), got {text!r}") from None
    if not 1 <= len(sigma) <= 2 or not all(0 < s <= 0.5 for s in sigma):
        raise UsageError(f"--near-sigma {text}: give one or two scales, each in (0, 0.5] (unit-cube units)")
    return sigma


def run_preprocess(args, *, log=print) -> int:
    from onet.utils.errors import UsageError
    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.near_surface < 0:
        raise UsageError(f"--near-surface must be >= 0, got {args.near_surface}")
    try:
        options = PreprocessOptions(n_points=args.n_points, n_surface=args.n_surface, n_views=args.n_views,
                                    img_size=args.img_size, voxel_resolution=args.voxel_resolution,
                                    watertight_resolution=args.watertight_resolution,
                                    materials=not args.no_materials, depth=args.depth,
                                    n_near_surface=args.near_surface, near_surface_sigma=parse_sigma(args.near_sigma),
                                    seed=args.seed, splits_from=args.splits_from, up_axis=args.up_axis)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    summary = preprocess_dataset(args.input, args.output, options=options, workers=args.workers,
                                 shard=parse_shard(args.shard), progress=not args.no_progress,
                                 overwrite=args.overwrite)
    log(f"preprocessed {summary.n_ok} objects, skipped {summary.n_skipped} already complete, "
        f"{summary.n_failed} failed")
    for item, reason in summary.failures:
        log(f"  failed {item.category}/{item.model_id} ({item.path}): {reason}")
    for item, reason in summary.warnings:
        log(f"  warning: {item.category}/{item.model_id} ({item.path}): {reason}" if item else f"  warning: {reason}")
    if summary.failures or summary.warnings:
        log(f"per-object records are in {summary.report_path}")
    if summary.mean_timings:
        log("mean seconds per object: " + ", ".join(f"{k} {v:.2f}" for k, v in summary.mean_timings.items()))
    return summary.exit_code  # 1 when any object failed (onet.utils.batch)

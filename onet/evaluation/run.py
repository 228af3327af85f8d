"""`onet eval`: choose the evaluation mode from the command line and print its table.

Dataset and input evaluations split over processes: under torchrun every rank
scores its share of the objects into per-object records and rank 0 then
merges them into the tables; `--shard I/N` scores one share and stops, and a
final unsharded `onet eval` merges (`onet.evaluation.records`).
"""

from __future__ import annotations

from pathlib import Path

from onet.data.dataset import list_items
from onet.models import FIELD, POINTS, output_kind


def run_eval(cfg: dict, args, *, log=print) -> int:
    from onet.utils.ranks import launch_info, parse_shard, shutdown

    shard = parse_shard(args.shard) if getattr(args, "shard", None) else None
    launch = launch_info()
    try:
        if (shard or launch.distributed) and (args.pred or args.gt or args.sweep or getattr(args, "generative", 0)):
            from onet.utils.errors import UsageError
            raise UsageError("--shard and torchrun split dataset evaluations (CONFIG, or --eval-input), "
                             "not --pred/--gt, --sweep or --generative")
        if not launch.is_main:
            log = lambda *a, **k: None  # noqa: E731  (rank 0 reports for all)
        return _run_eval(cfg, args, launch, shard, log)
    finally:
        shutdown(launch)


def _run_eval(cfg: dict, args, launch, shard, log) -> int:
    from onet.evaluation.evaluate import evaluate_dataset, evaluate_inputs, evaluate_pairs
    from onet.utils.ranks import barrier

    if getattr(args, "generative", False):  # samples scored as a set (onet.evaluation.generative)
        from onet.evaluation.generative import run_generative
        return run_generative(cfg, args, log=log)
    ecfg = cfg["evaluation"]
    common = dict(n_points=ecfg["n_points"], fscore_thresholds=tuple(ecfg["fscore_thresholds"]), seed=ecfg["seed"],
                  progress=not args.no_progress and launch.is_main)

    def split(evaluate):
        """Run `evaluate(shard=...)` for this process's share; rank 0 merges a torchrun job's shares."""
        share = launch.share(shard)
        if share.whole:
            return evaluate(shard=(0, 1))
        result = evaluate(shard=(share.index, share.count))
        if not launch.distributed:
            return result
        barrier(launch)  # every rank's records are written
        return evaluate(shard=(0, 1)) if shard is None and launch.is_main else result

    if args.pred or args.gt:
        if not (args.pred and args.gt):
            from onet.utils.errors import UsageError
            raise UsageError("direct mode needs both --pred and --gt")
        out = Path(args.output or "eval_pairs")
        result = evaluate_pairs(args.pred, args.gt, out, **common)
    elif args.sweep:
        from onet.evaluation.sweep import run_sweep
        if output_kind(cfg["model"]) != FIELD:
            from onet.utils.errors import UsageError
            raise UsageError(f"--sweep tunes the threshold of an occupancy field; this config's model predicts "
                             f"{output_kind(cfg['model'])}")
        return run_sweep(cfg, full=args.full_sweep, output=args.output, progress=not args.no_progress, log=log)
    else:
        data = cfg["data"]
        items, problems = list_items(data["path"], data["test_split"], data["classes"], skip_bad=data["skip_bad"])
        for problem in problems:
            log(f"warning: {problem}")
        if args.eval_input:
            if data["input_type"] not in ("voxels", "pointcloud"):
                from onet.utils.errors import UsageError
                raise UsageError(f"--eval-input scores voxel or point-cloud inputs; this config's "
                                 f"data.input_type is {data['input_type']!r}")
            out = Path(args.output or Path(cfg["out_dir"]) / ecfg["eval_dir"] / "input")
            result = split(lambda shard: evaluate_inputs(
                data["path"], items, out, input_type=data["input_type"], pointcloud_n=data["pointcloud_n"],
                pointcloud_noise=data["pointcloud_noise"], shard=shard, split=data["test_split"], **common))
        else:
            gen = Path(cfg["out_dir"]) / cfg["generation"]["generation_dir"] / "meshes"
            if not gen.is_dir():
                raise FileNotFoundError(f"no generated meshes in {gen}: run `onet generate {args.config}` first")
            out = Path(args.output or Path(cfg["out_dir"]) / ecfg["eval_dir"])
            # the one place evaluation looks at the model's output kind: point sets have no inside or normals
            prediction = "points" if output_kind(cfg["model"]) == POINTS else "mesh"
            result = split(lambda shard: evaluate_dataset(
                data["path"], items, gen, out, mesh_format=cfg["generation"]["mesh_format"], shard=shard,
                prediction=prediction, split=data["test_split"], **common))
    for problem in result.problems:
        log(f"warning: {problem}")
    if "records" in result.files:  # a shard: no tables yet
        log(f"{len(result.rows)} objects scored into {result.files['records']}; run `onet eval` without "
            "--shard once every shard is done to merge them into the tables")
        return 0
    log(result.markdown)
    log(f"tables written to {out}")
    return 0

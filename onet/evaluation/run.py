"""`onet eval`: choose the evaluation mode from the command line and print its table."""

from __future__ import annotations

from pathlib import Path

from onet.data.dataset import list_items


def run_eval(cfg: dict, args, *, log=print) -> int:
    from onet.evaluation.evaluate import evaluate_dataset, evaluate_inputs, evaluate_pairs

    ecfg = cfg["evaluation"]
    common = dict(n_points=ecfg["n_points"], fscore_thresholds=tuple(ecfg["fscore_thresholds"]), seed=ecfg["seed"],
                  progress=not args.no_progress)
    if args.pred or args.gt:
        if not (args.pred and args.gt):
            from onet.utils.errors import UsageError
            raise UsageError("direct mode needs both --pred and --gt")
        out = Path(args.output or "eval_pairs")
        result = evaluate_pairs(args.pred, args.gt, out, **common)
    elif args.sweep:
        from onet.evaluation.sweep import run_sweep
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
            result = evaluate_inputs(data["path"], items, out, input_type=data["input_type"],
                                     pointcloud_n=data["pointcloud_n"], pointcloud_noise=data["pointcloud_noise"],
                                     **common)
        else:
            gen = Path(cfg["out_dir"]) / cfg["generation"]["generation_dir"] / "meshes"
            if not gen.is_dir():
                raise FileNotFoundError(f"no generated meshes in {gen}: run `onet generate {args.config}` first")
            out = Path(args.output or Path(cfg["out_dir"]) / ecfg["eval_dir"])
            result = evaluate_dataset(data["path"], items, gen, out, mesh_format=cfg["generation"]["mesh_format"],
                                      **common)
    for problem in result.problems:
        log(f"warning: {problem}")
    log(result.markdown)
    log(f"tables written to {out}")
    return 0

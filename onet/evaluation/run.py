"""`onet eval`: choose the evaluation mode from the command line and print its table.

Dataset and input evaluations split over processes: under torchrun every rank
scores its share of the objects into per-object records and rank 0 then
merges them into the tables; `--shard I/N` scores one share and stops, and a
final unsharded `onet eval` merges (`onet.evaluation.records`).

The exit code follows the batch rule of onet.utils.batch: 1 when any object
failed (listed in failures.csv beside the tables), else 0.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from onet.data.dataset import list_items
from onet.models import FIELD, POINTS, output_kind
from onet.utils.device import resolve_device
from onet.utils.errors import UsageError
from onet.utils.stamp import read_stamp

LAST_GENERATION = "last_generation.yaml"  # written by `onet generate` into out_dir (test split)


def run_eval(cfg: dict, args, *, log=print) -> int:
    from onet.utils.ranks import launch_info, parse_shard, shutdown

    shard = parse_shard(args.shard) if getattr(args, "shard", None) else None
    launch = launch_info()
    try:
        if (shard or launch.distributed) and (args.gt or args.sweep or getattr(args, "generative", False)):
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
    ecfg, data = cfg["evaluation"], cfg["data"]
    # usage errors before any file is opened
    if args.gt and not args.pred:
        raise UsageError("direct mode needs both --pred and --gt")
    if args.eval_input and data["input_type"] not in ("voxels", "pointcloud"):
        raise UsageError(f"--eval-input scores voxel or point-cloud inputs; this config's "
                         f"data.input_type is {data['input_type']!r}")
    resolve_device(cfg["device"])  # --device: a GPU asked for and not there is an error, whatever the mode
    common = dict(n_points=ecfg["n_points"], fscore_thresholds=tuple(ecfg["fscore_thresholds"]), seed=ecfg["seed"],
                  progress=not args.no_progress and launch.is_main, log=log)
    files = dict(points_file=data["points_file"], pointcloud_file=data["pointcloud_file"])

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

    if args.gt:
        out = Path(args.output or "eval_pairs")
        result = evaluate_pairs(args.pred, args.gt, out, **common)
    elif args.sweep:
        from onet.evaluation.sweep import run_sweep
        if output_kind(cfg["model"]) != FIELD:
            raise UsageError(f"--sweep tunes the threshold of an occupancy field; this config's model predicts "
                             f"{output_kind(cfg['model'])}")
        return run_sweep(cfg, full=args.full_sweep, output=args.output, device=cfg["device"],
                         progress=not args.no_progress, log=log)
    else:
        items, problems = list_items(data["path"], data["test_split"], data["classes"], skip_bad=data["skip_bad"])
        for problem in problems:
            log(f"warning: {problem}")
        if args.eval_input:
            out = Path(args.output or Path(cfg["out_dir"]) / ecfg["eval_dir"] / "input")
            result = split(lambda shard: evaluate_inputs(
                data["path"], items, out, input_type=data["input_type"], pointcloud_n=data["pointcloud_n"],
                pointcloud_noise=data["pointcloud_noise"], voxels_file=data["voxels_file"], shard=shard,
                workers=ecfg["workers"],
                split=data["test_split"], **files, **common))
        else:
            meshes, fmt = generation_meshes(cfg, args.pred, config_name=args.config)
            log(f"scoring the {fmt} meshes in {meshes}")
            out = Path(args.output or Path(cfg["out_dir"]) / ecfg["eval_dir"])
            # the one place evaluation looks at the model's output kind: point sets have no inside or normals
            prediction = "points" if output_kind(cfg["model"]) == POINTS else "mesh"
            result = split(lambda shard: evaluate_dataset(
                data["path"], items, meshes, out, mesh_format=fmt, shard=shard, prediction=prediction,
                workers=ecfg["workers"],
                split=data["test_split"], **files, **common))
    for problem in result.problems:
        log(f"warning: {problem}")
    if "records" in result.files:  # a shard: no tables yet
        log(f"{len(result.rows)} objects scored into {result.files['records']}; run `onet eval` without "
            "--shard once every shard is done to merge them into the tables")
        return result.exit_code
    log(result.markdown)
    log(f"tables written to {out}")
    if result.failures:
        log(f"{len(result.failures)} objects failed (listed in {out / 'failures.csv'})")
    return result.exit_code


def generation_meshes(cfg: dict, pred: str | None = None, *, config_name: str | None = None) -> tuple[Path, str]:
    """(meshes folder, mesh format) of the test-split generation to score.

    `pred` (a generation folder or its meshes/ folder) when given; otherwise the
    folder the latest `onet generate CONFIG` of this split and generation_dir recorded
    in out_dir/last_generation.yaml (it may have used --output), else
    out_dir/<generation.generation_dir>. The
    format is the one that folder's stamp.yaml recorded (`--format`), else
    generation.mesh_format.
    """
    fmt = cfg["generation"]["mesh_format"]
    if pred is not None:
        folder = Path(pred)
        if not (folder / "meshes").is_dir() and folder.name == "meshes":
            folder = folder.parent
    else:
        folder = Path(cfg["out_dir"]) / cfg["generation"]["generation_dir"]
        record_path = Path(cfg["out_dir"]) / LAST_GENERATION
        if record_path.is_file():
            try:
                records = yaml.safe_load(record_path.read_text(encoding="utf-8")) or {}
            except (yaml.YAMLError, UnicodeDecodeError):
                records = {}
            # keyed like onet.generation.run._record_last_generation: (split, generation_dir)
            key = f"{cfg['data']['test_split']}|{cfg['generation']['generation_dir']}"
            record = records.get(key) if isinstance(records, dict) else None
            if isinstance(record, dict):
                recorded = Path(str(record.get("folder")))  # relative: to out_dir (a moved run folder too)
                recorded = recorded if recorded.is_absolute() else Path(cfg["out_dir"]) / recorded
                if recorded.is_dir():
                    folder, fmt = recorded, record.get("mesh_format", fmt)
    stamp = read_stamp(folder)
    if stamp is not None:
        options = stamp["options"]
        if options.get("mode") not in (None, "test_split", "encode"):  # encode: the test split via a VAE
            raise UsageError(f"{folder} holds meshes of `onet generate --{options['mode']}`, not of the "
                             "test split; give the folder of a test-split generation with --pred")
        fmt = options.get("mesh_format", fmt)
    meshes = folder / "meshes"
    if not meshes.is_dir():
        hint = f"run `onet generate {config_name}` first" if config_name else "run `onet generate` first"
        raise FileNotFoundError(f"no generated meshes in {meshes}: {hint} (or give --pred DIR)")
    return meshes, fmt

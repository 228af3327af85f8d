"""`onet demo`: the whole pipeline on the built-in synthetic shapes, on CPU, in minutes.

1. build (or reuse) the synthetic dataset,
2. train the single-image model of configs/demo.yaml,
3. generate meshes for the test split and for a folder of plain PNG images,
4. evaluate the test meshes and print the per-class table.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
from PIL import Image

from onet.config import CONFIG_DIR, load_config, validate
from onet.data import BUILTIN_OBJECTS_PER_CLASS, BUILTIN_SPLIT_FRACTIONS
from onet.data.dataset import list_items

DEMO_OBJECTS_PER_CLASS = BUILTIN_OBJECTS_PER_CLASS
# The demo's promise: done within DEMO_MINUTES on 2 CPU cores. Training gets what the dataset
# left of them less the stages after it (threshold sweep, 78 meshes at 128^3, evaluation: 1.1-1.2
# min measured on a 2-core AMD EPYC in fp32) and a margin. Where the machine is too slow or too
# busy for train.max_iters in that time, training stops early, but not before DEMO_MIN_FRACTION
# of them: the cosine schedule has then decayed to 5% of its learning rate, and the result moves
# little (1800 iterations: mean test IoU 0.718 against 0.729 for 2000, configs/demo.yaml).
DEMO_MINUTES = 13.0
AFTER_TRAINING_MINUTES = 1.6
DEMO_MIN_FRACTION = 0.85


def _banner(text: str, log) -> None:
    log(f"\n=== {text}")


class _StageClock:
    """Wall time of each demo stage, for the closing summary: where a slow machine spends its minutes."""

    def __init__(self):
        self.start = self.mark = time.time()
        self.spent: list[tuple[str, float]] = []

    def done(self, stage: str) -> None:
        now = time.time()
        self.spent.append((stage, now - self.mark))
        self.mark = now

    def elapsed(self) -> float:
        return time.time() - self.start

    def summary(self) -> str:
        parts = ", ".join(f"{stage} {seconds / 60:.1f}" for stage, seconds in self.spent)
        return f"{(self.mark - self.start) / 60:.1f} min ({parts})"


def _overridden(key: str, overrides) -> bool:
    return any(o.split("=", 1)[0].strip() == key for o in overrides)


def training_budget(tcfg: dict, overrides, elapsed: float) -> tuple[float, int] | None:
    """(train.max_time, train.min_iters) that end the demo within DEMO_MINUTES, `elapsed` seconds
    in; None where the user set train.max_time or the config has no iteration count."""
    if tcfg["max_iters"] is None or _overridden("train.max_time", overrides):
        return None
    seconds = max(60.0, (DEMO_MINUTES - AFTER_TRAINING_MINUTES) * 60 - elapsed)
    floor = tcfg["min_iters"] if _overridden("train.min_iters", overrides) else \
        math.ceil(DEMO_MIN_FRACTION * tcfg["max_iters"])
    return seconds, floor


def make_image_folder(dataset_root: Path, items: list[tuple[str, str]], folder: Path, *, img_folder: str,
                      view: int = 5) -> list[Path]:
    """Copy one rendering of each object as a plain PNG, like photos a user would bring."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for cat, model_id in items:
        src = sorted((dataset_root / cat / model_id / img_folder).glob("*.jpg"))
        if not src:
            continue
        dst = folder / f"{cat}_{model_id}.png"
        if not dst.is_file():
            with Image.open(src[min(view, len(src) - 1)]) as img:
                tmp = dst.with_suffix(".tmp.png")
                img.convert("RGB").save(tmp)
                tmp.replace(dst)
        written.append(dst)
    return written


def choose_threshold(cfg: dict, *, progress: bool = True, log=print) -> float:
    """Set cfg's test.threshold to the tau with the best validation IoU (`onet eval --sweep`'s fast sweep).

    The thesis's protocol for its one hyperparameter (§11.2: "we cross-validate this threshold on
    a validation set"; it found 0.2 for its models). The demo's smaller, briefly trained model
    prefers a higher tau (0.3-0.4 on three runs: +0.02-0.03 validation IoU). The test split is not read.
    """
    from onet.evaluation import sweep_thresholds

    result = sweep_thresholds(cfg, progress=progress, log=lambda *a: None)
    ious = {r["tau"]: r["iou"] for r in result.rows}
    old = float(cfg["test"]["threshold"])
    at_old = f"; {ious[old]:.3f} at the config's {old:g}" if old in ious else ""
    log(f"threshold tau = {result.best_tau:g}, chosen on the validation split (IoU {ious[result.best_tau]:.3f}"
        f"{at_old}; the sweep is in {Path(cfg['out_dir']) / cfg['evaluation']['eval_dir'] / 'sweep'}). "
        "Keep the config's with `onet demo test.threshold=VALUE`")
    cfg["test"]["threshold"] = result.best_tau
    return result.best_tau


def run_demo(*, out_dir: str | Path = "out/demo", data_dir: str | Path = "data/synthetic", config: str | None = None,
             overrides: list[str] | tuple[str, ...] = (), n_per_class: int = DEMO_OBJECTS_PER_CLASS,
             classes: list[str] | None = None, n_views: int = 24, img_size: int = 137, n_points: int = 100000,
             device: str = "cpu", progress: bool = True, log=print) -> int:
    from onet.data.synthetic import build_synthetic_dataset
    from onet.evaluation import evaluate_dataset
    from onet.generation import generate
    from onet.training import train

    clock = _StageClock()
    out_dir, data_dir = Path(out_dir), Path(data_dir)
    cfg = load_config(config or CONFIG_DIR / "demo.yaml", overrides)
    cfg["out_dir"], cfg["device"] = str(out_dir), device
    cfg["data"]["path"] = str(data_dir)
    cfg = validate(cfg, source="demo")

    _banner(f"1/4 synthetic dataset in {data_dir}", log)
    build_synthetic_dataset(data_dir, n_per_class=n_per_class, classes=classes, seed=cfg["seed"], n_views=n_views,
                            img_size=img_size, n_points=n_points, n_surface=n_points,
                            split_fractions=BUILTIN_SPLIT_FRACTIONS, progress=progress)
    clock.done("dataset")

    _banner(f"2/4 training the single-image model of {config or 'configs/demo.yaml'} into {out_dir}", log)
    tcfg = cfg["train"]
    if tcfg["max_iters"] is not None:
        # a number of iterations, not a time cap, so that the result depends little on the machine's
        # load: a budget may end it early, but not before min_iters (DEMO_MIN_FRACTION)
        budget = training_budget(tcfg, overrides, clock.elapsed())
        within = ""
        if budget is not None:
            tcfg["max_time"], tcfg["min_iters"] = budget
            within = (f" (fewer, not below {tcfg['min_iters']}, if they would not end within the demo's "
                      f"{DEMO_MINUTES:g} minutes: {budget[0] / 60:.1f} min are left for training; "
                      "`onet demo train.max_time=null` trains them all)")
        log(f"training {tcfg['max_iters']} iterations{within}; how long they take on this machine is printed "
            "once the first few dozen have been timed")
    result = train(cfg, progress=progress, log=log)
    clock.done("training")

    _banner("3/4 choosing the threshold on the validation split, generating meshes", log)
    if not _overridden("test.threshold", overrides):
        choose_threshold(cfg, progress=progress, log=log)
    # the demo owns its folders: meshes of an earlier, different demo run are redone, not refused
    generate(cfg, redo_if_changed=True, progress=progress, log=log)
    test_items, _ = list_items(data_dir, cfg["data"]["test_split"], cfg["data"]["classes"])
    rng = np.random.default_rng(0)
    picks = [test_items[i] for i in sorted(rng.choice(len(test_items), size=min(6, len(test_items)), replace=False))]
    image_dir = out_dir / "my_images"
    make_image_folder(data_dir, picks, image_dir, img_folder=cfg["data"]["img_folder"])
    user = generate(cfg, input_dir=image_dir, redo_if_changed=True, progress=progress, log=log)
    clock.done("threshold and meshes")

    _banner("4/4 evaluating the test split", log)
    gen_dir = out_dir / cfg["generation"]["generation_dir"]
    ecfg = cfg["evaluation"]
    ev = evaluate_dataset(data_dir, test_items, gen_dir / "meshes", out_dir / ecfg["eval_dir"],
                          mesh_format=cfg["generation"]["mesh_format"], n_points=ecfg["n_points"],
                          fscore_thresholds=tuple(ecfg["fscore_thresholds"]), seed=ecfg["seed"], progress=progress,
                          split=cfg["data"]["test_split"], points_file=cfg["data"]["points_file"],
                          pointcloud_file=cfg["data"]["pointcloud_file"], workers=ecfg["workers"])
    clock.done("evaluation")
    log("")
    log(ev.markdown)
    cut = result.stop_reason.startswith("reached train.max_time") and tcfg["max_iters"] is not None
    trained = f"{result.iterations} of {tcfg['max_iters']} iterations (the time budget)" if cut else \
        f"{result.iterations} iterations"
    log(f"\ndemo finished in {clock.summary()}: trained {trained} (best val IoU {result.best_metric:.3f})")
    log(f"  test meshes and previews:  {gen_dir}/meshes, {gen_dir}/previews")
    log(f"  your-images meshes:        {user.out_dir}/meshes (inputs in {image_dir})")
    log(f"  tables:                    {out_dir / ecfg['eval_dir']}")
    return 0

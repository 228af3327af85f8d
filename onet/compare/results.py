"""Reading the evaluation results of several runs and checking that they compare.

A run is found by its folder: a run folder (out_dir of a config, whose
resolved config.yaml names the eval folder, `eval/` by default) or an eval
folder itself (one holding eval.json, e.g. `out_dir/eval/input` written by
`onet eval --eval-input`). Everything is read from eval.json, the complete
record `onet eval` writes beside its tables: per-class means, the mean over
classes, every object, the dataset and the split.

Runs compare when they scored the same objects of the same dataset (and,
where eval.json records it, the same split); otherwise the folder that
differs is named in a UsageError (exit code 2).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from onet.models import FIELD, POINTS, VOXELS, output_kind
from onet.utils.errors import UsageError

EVAL_FILE = "eval.json"
# method names in the thesis's tables, by the output kind of a run's model
METHOD_NAMES = {FIELD: "ONet", VOXELS: "3D-R2N2", POINTS: "PSGN"}
INPUT_NAME = "Input"


@dataclass
class MethodResult:
    """One row of a comparison: a run's evaluation, as eval.json holds it.

    mean: {metric: mean over classes, None where the metric is not defined};
    classes: {category: {metric: class mean or None}}; class_names: {category:
    display name}; objects: "category/model_id" of every scored object.
    """

    name: str
    folder: Path
    source: Path
    mode: str
    dataset: str | None
    split: str | None
    objects: frozenset[str]
    mean: dict[str, float | None]
    classes: dict[str, dict[str, float | None]]
    class_names: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def is_input(self) -> bool:
        return self.mode.startswith("input:")


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _eval_dir_of_run(folder: Path) -> Path:
    cfg = _read_yaml(folder / "config.yaml")
    eval_dir = (cfg.get("evaluation") or {}).get("eval_dir", "eval")
    return folder / str(eval_dir)


def find_eval_file(folder: str | os.PathLike, *, input_row: bool = False) -> Path:
    """eval.json of a run folder or an eval folder; for `input_row`, the `--eval-input` one.

    Raises UsageError naming the folder when there is none.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder; give run folders (a config's out_dir) or eval folders")
    direct = folder / EVAL_FILE
    if direct.is_file():
        return direct
    eval_dir = _eval_dir_of_run(folder)
    candidate = eval_dir / "input" / EVAL_FILE if input_row else eval_dir / EVAL_FILE
    if candidate.is_file():
        return candidate
    how = "onet eval CONFIG --eval-input" if input_row else "onet eval CONFIG"
    raise UsageError(f"{folder}: no evaluation results (looked for {direct} and {candidate}); "
                     f"run `{how}` for this run first")


def _method_name(eval_file: Path, mode: str) -> str:
    if mode.startswith("input:"):
        return INPUT_NAME
    # the run folder holds the config that trained the model; eval folders sit inside it
    for folder in (eval_file.parent, *eval_file.parents):
        cfg = _read_yaml(folder / "config.yaml")
        if isinstance(cfg.get("model"), dict) and "decoder" in cfg["model"]:
            try:
                return METHOD_NAMES[output_kind(cfg["model"])]
            except ValueError:
                break
    return eval_file.parent.name


def load_result(folder: str | os.PathLike, *, name: str | None = None, input_row: bool = False) -> MethodResult:
    """The evaluation results of one run (see `find_eval_file`); name defaults to the method's."""
    folder = Path(folder)
    path = find_eval_file(folder, input_row=input_row)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        columns = list(data["columns"])
        classes = {c["category"]: {k: c.get(k) for k in columns} for c in data["classes"]}
        class_names = {c["category"]: c.get("name", c["category"]) for c in data["classes"]}
        counts = {c["category"]: int(c.get("count", 0)) for c in data["classes"]}
        mean = {k: data["mean_over_classes"].get(k) for k in columns}
        objects = frozenset(f"{o['category']}/{o['model_id']}" for o in data["objects"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{folder}: {path} is not an evaluation result of `onet eval` ({exc})") from None
    mode = str(data.get("mode", "dataset"))
    if input_row and not mode.startswith("input:"):
        raise UsageError(f"{folder}: {path} scores a model's predictions, not the inputs; "
                         "--eval-input wants the result of `onet eval CONFIG --eval-input`")
    dataset = data.get("dataset") or (data.get("gt") if mode == "pairs" else None)
    return MethodResult(
        name=name or _method_name(path, mode), folder=folder, source=path, mode=mode,
        dataset=str(dataset) if dataset else None, split=data.get("split"), objects=objects,
        mean=mean, classes=classes, class_names=class_names, counts=counts,
    )


def check_comparable(results: list[MethodResult]) -> None:
    """Raise UsageError naming the first folder whose dataset, split or objects differ from the first run's."""
    first = results[0]
    for other in results[1:]:
        if first.dataset and other.dataset and first.dataset != other.dataset:
            raise UsageError(f"{other.folder}: evaluated on dataset {other.dataset}, but {first.folder} on "
                             f"{first.dataset}; compare runs on the same dataset and split")
        if first.split and other.split and first.split != other.split:
            raise UsageError(f"{other.folder}: evaluated on split '{other.split}', but {first.folder} on "
                             f"'{first.split}'; compare runs on the same dataset and split")
        if other.objects != first.objects:
            extra = sorted(other.objects - first.objects)
            missing = sorted(first.objects - other.objects)
            example = f"it has {extra[0]} which {first.folder} has not" if extra else \
                f"it lacks {missing[0]} which {first.folder} has"
            raise UsageError(f"{other.folder}: evaluated {len(other.objects)} objects, {first.folder} "
                             f"{len(first.objects)} ({example}); compare runs on the same split and classes")

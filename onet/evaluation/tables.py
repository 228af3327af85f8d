"""Per-object results -> per-class tables (Markdown, LaTeX, CSV, JSON).

Layout follows the thesis tables: one row per class (named from
metadata.yaml), then the mean over classes (each class weighs the same, the
number the literature reports) and the mean over objects. Columns: IoU,
Chamfer-L1, normal consistency, accuracy, completeness, F-score at each
threshold, the object count and the number of empty predictions. Empty
predictions carry worst-case values and are included in every mean.

A metric that does not apply (IoU and normal consistency of a point set: a
PSGN prediction or a point-cloud input) is never printed as NaN: the printed
tables show "–" in the thesis's three columns (IoU, Chamfer-L1, normal
consistency), as the thesis does, and leave other such columns out; CSV and
JSON leave it out.

Units. CSV and JSON hold raw distances in box units (the normalised object's
longest bounding-box edge is 1). The Markdown and LaTeX tables multiply
distances (Chamfer-L1, accuracy, completeness) by `chamfer_scale` (10 by
default, as in the literature) and say so in their caption line.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from onet.evaluation.metrics import MeshMetrics
from onet.utils.io import write_text_atomic

# metric keys in table order; F-score keys ("fscore@0.01") follow "completeness"
METRIC_KEYS = ("iou", "chamfer_l1", "normal_consistency", "accuracy", "completeness")
# the columns of the thesis's tables, printed even where undefined ("–")
THESIS_KEYS = ("iou", "chamfer_l1", "normal_consistency")
UNDEFINED = "–"
DISTANCE_KEYS = ("chamfer_l1", "accuracy", "completeness")
METRIC_LABELS = {
    "iou": "IoU",
    "chamfer_l1": "Chamfer-L1",
    "normal_consistency": "Normal Consistency",
    "accuracy": "Accuracy",
    "completeness": "Completeness",
    "chamfer_l2": "Chamfer-L2",
}
DISTANCE_UNIT = "box units (the normalised object's longest bounding-box edge is 1)"


@dataclass
class ObjectRow:
    """Result for one object. status: "ok", "empty", "missing" or "unreadable"."""

    category: str
    model_id: str
    metrics: MeshMetrics
    status: str = "ok"
    reason: str = ""


@dataclass
class ClassRow:
    """Means over a group of objects; `means[key]` for each key of the table's columns."""

    category: str
    name: str
    count: int
    n_empty: int
    means: dict[str, float] = field(default_factory=dict)


@dataclass
class ResultTable:
    classes: list[ClassRow]
    mean_over_classes: ClassRow
    mean_over_objects: ClassRow
    columns: list[str]  # metric keys present in every row, in table order
    fscore_thresholds: tuple[float, ...]


def fscore_key(threshold: float) -> str:
    return f"fscore@{threshold:g}"


def metrics_to_dict(metrics: MeshMetrics) -> dict[str, float | None]:
    """Flatten MeshMetrics to {key: value}; F-scores as "fscore@<threshold>"; None = not applicable."""
    flat = {
        "iou": metrics.iou,
        "chamfer_l1": metrics.chamfer_l1,
        "normal_consistency": metrics.normal_consistency,
        "accuracy": metrics.accuracy,
        "completeness": metrics.completeness,
        "chamfer_l2": metrics.chamfer_l2,
    }
    for t, value in sorted(metrics.fscore.items()):
        flat[fscore_key(t)] = value
    return flat


def class_names_from_metadata(metadata: dict) -> dict[str, str]:
    """{category: short name} from metadata.yaml ({synset: {id, name: "chair,seat"}}); first name kept."""
    names = {}
    for category, entry in (metadata or {}).items():
        name = entry.get("name", category) if isinstance(entry, dict) else str(entry)
        names[str(category)] = str(name).split(",")[0].strip() or str(category)
    return names


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values) if values else float("nan")


def _group(category: str, name: str, rows: list[ObjectRow], columns: list[str]) -> ClassRow:
    flats = [metrics_to_dict(r.metrics) for r in rows]
    means = {k: _mean([f[k] for f in flats if f.get(k) is not None]) for k in columns}
    n_empty = sum(r.metrics.empty for r in rows)
    return ClassRow(category=category, name=name, count=len(rows), n_empty=n_empty, means=means)


def build_table(rows: list[ObjectRow], *, class_names: dict[str, str] | None = None) -> ResultTable:
    """Per-class means, the mean over classes and the mean over objects.

    Args:
        rows: one ObjectRow per evaluated object (at least one).
        class_names: {category: display name}; the category id otherwise.
    """
    if not rows:
        raise ValueError("no rows to tabulate: evaluate at least one object")
    class_names = class_names or {}
    thresholds = tuple(sorted({t for r in rows for t in r.metrics.fscore}))
    flats = [metrics_to_dict(r.metrics) for r in rows]
    candidates = list(METRIC_KEYS) + [fscore_key(t) for t in thresholds] + ["chamfer_l2"]
    # a column is shown when it applies to some object (not None)
    columns = [k for k in candidates if any(f.get(k) is not None for f in flats)]

    by_class: dict[str, list[ObjectRow]] = {}
    for r in rows:
        by_class.setdefault(r.category, []).append(r)
    classes = [_group(c, class_names.get(c, c), rs, columns) for c, rs in by_class.items()]
    classes.sort(key=lambda c: (c.name, c.category))

    over_classes = ClassRow(
        category="mean",
        name="mean (classes)",
        count=len(rows),
        n_empty=sum(c.n_empty for c in classes),
        means={k: _mean([c.means[k] for c in classes if not math.isnan(c.means[k])]) for k in columns},
    )
    over_objects = _group("mean", "mean (objects)", rows, columns)
    return ResultTable(classes, over_classes, over_objects, columns, thresholds)


def metric_label(key: str, chamfer_scale: float) -> str:
    """A metric's column title: its name, the F-score threshold in %, the distance scale factor."""
    if key.startswith("fscore@"):
        return f"F-score@{float(key.split('@')[1]) * 100:g}%"
    label = METRIC_LABELS[key]
    if key in DISTANCE_KEYS and chamfer_scale != 1:
        label += f" x{chamfer_scale:g}"
    return label


def unit_caption(chamfer_scale: float = 10) -> str:
    """The caption line that states the distance unit of a printed table."""
    if chamfer_scale == 1:
        return "Chamfer-L1, accuracy, completeness: plain (unit: the box, i.e. the normalised longest edge = 1)."
    return (
        f"Chamfer-L1, accuracy, completeness x{chamfer_scale:g} "
        f"(unit: 1/{chamfer_scale:g} of the box, i.e. of the normalised longest edge); "
        "F-score thresholds in % of the box."
    )


def _display_columns(table: ResultTable) -> list[str]:
    # Chamfer-L2 lives in CSV/JSON only, as in the thesis tables
    base = [k for k in METRIC_KEYS if k in table.columns or k in THESIS_KEYS]
    return base + [k for k in table.columns if k.startswith("fscore@")]


def _formatted_rows(table: ResultTable, chamfer_scale: float) -> list[list[str]]:
    out = []
    for row in [*table.classes, table.mean_over_classes, table.mean_over_objects]:
        cells = [row.name]
        for k in _display_columns(table):
            value = row.means.get(k)
            if value is None or math.isnan(value):
                cells.append(UNDEFINED)
                continue
            cells.append(f"{value * (chamfer_scale if k in DISTANCE_KEYS else 1):.3f}")
        cells += [str(row.count), str(row.n_empty)]
        out.append(cells)
    return out


def format_markdown(table: ResultTable, *, chamfer_scale: float = 10) -> str:
    """A Markdown table with a caption line stating the distance unit."""
    header = ["Class"] + [metric_label(k, chamfer_scale) for k in _display_columns(table)] + ["Count", "Empty"]
    lines = [unit_caption(chamfer_scale), "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|")
    for cells in _formatted_rows(table, chamfer_scale):
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$"),
                 (UNDEFINED, "--")):
        text = text.replace(a, b)
    return text


def format_latex(table: ResultTable, *, chamfer_scale: float = 10) -> str:
    """A booktabs LaTeX table whose caption states the distance unit."""
    header = ["Class"] + [metric_label(k, chamfer_scale) for k in _display_columns(table)] + ["Count", "Empty"]
    rows = _formatted_rows(table, chamfer_scale)
    lines = [
        r"\begin{table}",
        r"\centering",
        r"\caption{" + _latex_escape(unit_caption(chamfer_scale)) + "}",
        r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
        r"\toprule",
        " & ".join(_latex_escape(h) for h in header) + r" \\",
        r"\midrule",
    ]
    for i, cells in enumerate(rows):
        if i == len(table.classes):
            lines.append(r"\midrule")
        lines.append(" & ".join(_latex_escape(c) for c in cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def _csv_text(header: list[str], rows: list[list]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _cell(value) -> str:
    # not applicable -> blank cell, never "nan"
    return "" if value is None else repr(float(value))


def format_classes_csv(table: ResultTable) -> str:
    """Per-class CSV, raw distances in box units (no scaling)."""
    header = ["category", "name", "count", "n_empty"] + table.columns
    rows = [
        [r.category, r.name, r.count, r.n_empty] + [_cell(r.means[k]) for k in table.columns]
        for r in [*table.classes, table.mean_over_classes, table.mean_over_objects]
    ]
    return _csv_text(header, rows)


def format_objects_csv(rows: list[ObjectRow]) -> str:
    """Per-object CSV, raw distances in box units; blank cells where a metric does not apply."""
    keys: list[str] = []
    for r in rows:
        for k in metrics_to_dict(r.metrics):
            if k not in keys:
                keys.append(k)
    header = ["category", "model_id", "status", "reason", "empty"] + keys
    body = []
    for r in rows:
        flat = metrics_to_dict(r.metrics)
        body.append([r.category, r.model_id, r.status, r.reason, int(r.metrics.empty)] + [_cell(flat.get(k)) for k in keys])
    return _csv_text(header, body)


def _json_number(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def table_to_json(table: ResultTable, rows: list[ObjectRow], *, extra: dict | None = None) -> str:
    """All results as JSON: unit, columns, classes, both means and every object."""

    def class_dict(c: ClassRow) -> dict:
        return {
            "category": c.category,
            "name": c.name,
            "count": c.count,
            "n_empty": c.n_empty,
            **{k: _json_number(c.means[k]) for k in table.columns},
        }

    payload = {
        "distance_unit": DISTANCE_UNIT,
        "columns": table.columns,
        "classes": [class_dict(c) for c in table.classes],
        "mean_over_classes": class_dict(table.mean_over_classes),
        "mean_over_objects": class_dict(table.mean_over_objects),
        "objects": [
            {
                "category": r.category,
                "model_id": r.model_id,
                "status": r.status,
                "reason": r.reason,
                "empty": r.metrics.empty,
                **{k: _json_number(v) for k, v in metrics_to_dict(r.metrics).items()},
            }
            for r in rows
        ],
    }
    payload.update(extra or {})
    return json.dumps(payload, indent=2) + "\n"


def write_tables(
    rows: list[ObjectRow],
    table: ResultTable,
    out_dir,
    *,
    chamfer_scale: float = 10,
    extra_json: dict | None = None,
) -> dict[str, Path]:
    """Write eval_meshes.csv, eval_classes.{csv,md,tex} and eval.json atomically into out_dir."""
    out_dir = Path(out_dir)
    files = {
        "eval_meshes.csv": format_objects_csv(rows),
        "eval_classes.csv": format_classes_csv(table),
        "eval_classes.md": format_markdown(table, chamfer_scale=chamfer_scale),
        "eval_classes.tex": format_latex(table, chamfer_scale=chamfer_scale),
        "eval.json": table_to_json(table, rows, extra=extra_json),
    }
    paths = {}
    for name, text in files.items():
        paths[name] = out_dir / name
        write_text_atomic(paths[name], text)
    return paths

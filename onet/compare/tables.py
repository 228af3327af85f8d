"""Side-by-side tables in the layout of the thesis (Tables 11.1-11.4, F.1-F.3).

Two layouts:
- methods: one row per method, one column per metric, the mean over classes
  (the number the thesis reports);
- per class: one row per class plus the mean, the columns grouped by metric
  and, inside each group, one column per method (like Table F.1).

"–" marks a metric that is not defined for a method (IoU and normal
consistency of a point set, which has no inside and no normals). Numbers are
printed as `onet eval` prints its own tables: three decimals, distances
(Chamfer-L1, accuracy, completeness) multiplied by `chamfer_scale` (10, as
in the literature), which the caption states. Markdown, LaTeX and CSV hold
these printed cells; JSON holds the raw means in box units (null where not
defined).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass

from onet.compare.results import MethodResult
from onet.evaluation import DISTANCE_KEYS, DISTANCE_UNIT, METRIC_KEYS, THESIS_KEYS, UNDEFINED, metric_label

DEFAULT_METRICS = THESIS_KEYS


@dataclass
class Comparison:
    """Methods (rows, in order, the "Input" row first) and the metric keys to show (columns)."""

    methods: list[MethodResult]
    metrics: list[str]
    chamfer_scale: float = 10

    @property
    def categories(self) -> list[str]:
        # every method scored the same objects, so the same classes; sorted by display name as in eval tables
        names = self.methods[0].class_names
        return sorted(self.methods[0].classes, key=lambda c: (names.get(c, c), c))


def available_metrics(methods: list[MethodResult]) -> list[str]:
    """Metric keys any of the methods reports, in table order (F-scores after completeness)."""
    present = {k for m in methods for k, v in m.mean.items() if v is not None}
    fscores = sorted((k for k in present if k.startswith("fscore@")), key=lambda k: float(k.split("@")[1]))
    return [k for k in METRIC_KEYS if k in present] + fscores


def resolve_metrics(requested: list[str] | None, methods: list[MethodResult]) -> list[str]:
    """The columns: the thesis's three by default, every reported metric for ["all"], else as listed."""
    available = available_metrics(methods)
    if not requested:
        return list(DEFAULT_METRICS)
    if requested == ["all"]:
        return available
    valid = list(METRIC_KEYS) + [k for k in available if k.startswith("fscore@")]
    unknown = [k for k in requested if k not in valid]
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(valid)} or all")
    return list(requested)


def format_value(key: str, value: float | None, chamfer_scale: float) -> str:
    """A cell as `onet eval` prints it: three decimals, distances scaled; "–" when not defined."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return UNDEFINED
    return f"{value * (chamfer_scale if key in DISTANCE_KEYS else 1):.3f}"


def caption(comparison: Comparison, *, per_class: bool) -> str:
    scale = comparison.chamfer_scale
    unit = ("distances in box units (the normalised longest edge = 1)" if scale == 1 else
            f"Chamfer-L1, accuracy, completeness x{scale:g} (unit: 1/{scale:g} of the box, "
            "i.e. of the normalised longest edge)")
    what = "Per-class means" if per_class else "Mean over classes"
    return f"{what}; {unit}; F-score thresholds in % of the box; {UNDEFINED}: not defined for the method."


def table_cells(comparison: Comparison, *, per_class: bool) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the printed table."""
    scale = comparison.chamfer_scale
    methods, metrics = comparison.methods, comparison.metrics
    if not per_class:
        header = ["Method"] + [metric_label(k, scale) for k in metrics]
        rows = [[m.name] + [format_value(k, m.mean.get(k), scale) for k in metrics] for m in methods]
        return header, rows
    header = ["Class"] + [f"{metric_label(k, scale)} ({m.name})" for k in metrics for m in methods]
    rows = []
    names = methods[0].class_names
    for category in comparison.categories:
        rows.append([names.get(category, category)]
                    + [format_value(k, m.classes[category].get(k), scale) for k in metrics for m in methods])
    rows.append(["mean"] + [format_value(k, m.mean.get(k), scale) for k in metrics for m in methods])
    return header, rows


def format_markdown(comparison: Comparison, *, per_class: bool = False) -> str:
    header, rows = table_cells(comparison, per_class=per_class)
    lines = [caption(comparison, per_class=per_class), "", "| " + " | ".join(header) + " |",
             "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("$", r"\$"), (UNDEFINED, "--")):
        text = text.replace(a, b)
    return text


def format_latex(comparison: Comparison, *, per_class: bool = False) -> str:
    """A booktabs table; per class, a header row of metric groups over a row of method names."""
    scale = comparison.chamfer_scale
    header, rows = table_cells(comparison, per_class=per_class)
    lines = [r"\begin{table}", r"\centering", r"\caption{" + _latex_escape(caption(comparison, per_class=per_class)) + "}",
             r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule"]
    if per_class:
        n = len(comparison.methods)
        groups = [rf"\multicolumn{{{n}}}{{c}}{{{_latex_escape(metric_label(k, scale))}}}" for k in comparison.metrics]
        lines.append(" & ".join(["Class"] + groups) + r" \\")
        rules = [rf"\cmidrule(lr){{{2 + i * n}-{1 + (i + 1) * n}}}" for i in range(len(comparison.metrics))]
        lines.append(" ".join(rules))
        lines.append(" & ".join([""] + [_latex_escape(m.name) for _ in comparison.metrics
                                        for m in comparison.methods]) + r" \\")
    else:
        lines.append(" & ".join(_latex_escape(h) for h in header) + r" \\")
    lines.append(r"\midrule")
    for i, row in enumerate(rows):
        if per_class and i == len(rows) - 1:
            lines.append(r"\midrule")  # the mean under the classes
        lines.append(" & ".join(_latex_escape(c) for c in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def format_csv(comparison: Comparison, *, per_class: bool = False) -> str:
    """The printed table as CSV (same cells as the Markdown table, caption left out)."""
    header, rows = table_cells(comparison, per_class=per_class)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def format_json(comparison: Comparison, *, per_class: bool = False) -> str:
    """Raw means (box units; null where not defined) of every method, overall and per class."""
    first = comparison.methods[0]
    payload = {
        "distance_unit": DISTANCE_UNIT,
        "chamfer_scale_of_printed_tables": comparison.chamfer_scale,
        "metrics": comparison.metrics,
        "dataset": next((m.dataset for m in comparison.methods if m.dataset), None),
        "split": next((m.split for m in comparison.methods if m.split), None),
        "n_objects": len(first.objects),
        "classes": [{"category": c, "name": first.class_names.get(c, c), "count": first.counts.get(c)}
                    for c in comparison.categories],
        "methods": [
            {
                "name": m.name,
                "folder": str(m.folder),
                "eval_file": str(m.source),
                "mode": m.mode,
                "mean_over_classes": {k: m.mean.get(k) for k in comparison.metrics},
                **({"classes": {c: {k: m.classes[c].get(k) for k in comparison.metrics}
                                for c in comparison.categories}} if per_class else {}),
            }
            for m in comparison.methods
        ],
    }
    return json.dumps(payload, indent=2, ensure_ascii=False) + "\n"


FORMATTERS = {"markdown": format_markdown, "latex": format_latex, "csv": format_csv, "json": format_json}
FILE_NAMES = {"markdown": "compare.md", "latex": "compare.tex", "csv": "compare.csv", "json": "compare.json"}

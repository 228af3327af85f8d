"""Compare stage: `onet compare` (several runs' evaluations side by side, as in the thesis's tables).

Public entry points (other stages and the CLI use only these):
    compare_runs(run_dirs, names=None, eval_input=None, metrics=None) -> Comparison
    format_comparison(comparison, fmt="markdown", per_class=False) -> str
    write_comparison(comparison, out_dir, per_class=False) -> {format: path}
    run_compare(run_dirs, ...)   the CLI verb: compare, print one format, optionally write all four
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from onet.compare.results import MethodResult, check_comparable, load_result
from onet.compare.tables import FILE_NAMES, FORMATTERS, Comparison, resolve_metrics
from onet.utils.errors import UsageError
from onet.utils.io import write_text_atomic

FORMATS = tuple(FORMATTERS)


def compare_runs(run_dirs, *, names: list[str] | None = None, eval_input: str | os.PathLike | None = None,
                 metrics: list[str] | None = None, chamfer_scale: float = 10) -> Comparison:
    """Load and check the evaluation results of `run_dirs` (and the "Input" row of `eval_input`).

    Args:
        run_dirs: run folders (a config's out_dir) or eval folders holding eval.json.
        names: one row name per run dir (default: the method of each run's config,
            "ONet", "3D-R2N2", "PSGN", or "Input" for an --eval-input result).
        eval_input: a run or eval folder whose `onet eval --eval-input` result becomes
            the first row, "Input".
        metrics: metric keys to show (default the thesis's IoU, Chamfer-L1, normal
            consistency; ["all"] for every metric the runs report).
    Raises UsageError (exit 2) naming the folder: no eval results, or runs on different
    datasets, splits or objects.
    """
    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise UsageError("give at least one run folder")
    if names is not None and len(names) != len(run_dirs):
        raise UsageError(f"--names gives {len(names)} names for {len(run_dirs)} run folders; give one per folder")
    methods: list[MethodResult] = []
    if eval_input is not None:
        methods.append(load_result(eval_input, input_row=True))
    methods += [load_result(d, name=names[i] if names else None) for i, d in enumerate(run_dirs)]
    check_comparable(methods)
    _disambiguate(methods, explicit=names is not None)
    try:
        columns = resolve_metrics(metrics, methods)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return Comparison(methods, columns, chamfer_scale)


def _disambiguate(methods: list[MethodResult], *, explicit: bool) -> None:
    # two runs of one method (say two ONets) get their folder names, unless the user named them
    if explicit:
        return
    seen: dict[str, int] = {}
    for m in methods:
        seen[m.name] = seen.get(m.name, 0) + 1
    for m in methods:
        if seen[m.name] > 1:
            m.name = f"{m.name} ({m.folder.name})"


def format_comparison(comparison: Comparison, fmt: str = "markdown", *, per_class: bool = False) -> str:
    """The table as "markdown", "latex", "csv" or "json"."""
    if fmt not in FORMATTERS:
        raise ValueError(f"format must be one of {', '.join(FORMATTERS)}, got {fmt!r}")
    return FORMATTERS[fmt](comparison, per_class=per_class)


def write_comparison(comparison: Comparison, out_dir: str | os.PathLike, *, per_class: bool = False) -> dict[str, Path]:
    """Write compare.md, compare.tex, compare.csv and compare.json atomically into out_dir."""
    out_dir = Path(out_dir)
    paths = {}
    for fmt, file_name in FILE_NAMES.items():
        paths[fmt] = out_dir / file_name
        write_text_atomic(paths[fmt], format_comparison(comparison, fmt, per_class=per_class))
    return paths


def run_compare(run_dirs, *, names: list[str] | None = None, eval_input=None, metrics: list[str] | None = None,
                per_class: bool = False, fmt: str = "markdown", output=None, chamfer_scale: float = 10,
                log=print, note=None) -> Comparison:
    """`onet compare`: `log` the table in `fmt`; with `output`, also write all four formats there.

    note: where the "tables written" line goes (default stderr, so stdout holds only the table).
    """
    note = note or (lambda text: print(text, file=sys.stderr))
    comparison = compare_runs(run_dirs, names=names, eval_input=eval_input, metrics=metrics,
                              chamfer_scale=chamfer_scale)
    log(format_comparison(comparison, fmt, per_class=per_class).rstrip("\n"))
    if output is not None:
        paths = write_comparison(comparison, output, per_class=per_class)
        note(f"tables written to {Path(output)} ({', '.join(p.name for p in paths.values())})")
    return comparison


__all__ = ["Comparison", "MethodResult", "FORMATS", "compare_runs", "format_comparison", "write_comparison",
           "run_compare"]

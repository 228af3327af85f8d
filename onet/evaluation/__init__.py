"""Evaluation stage: `onet eval` (mesh metrics, per-class tables, threshold sweeps).

Public entry points (other stages and the CLI use only these):
    evaluate_dataset(...), evaluate_inputs(...), evaluate_pairs(...) -> EvalResult
    sweep_thresholds(cfg, ...) -> SweepResult   threshold sweep on the validation split
    run_sweep(cfg, ...)       the same, printed for `onet eval --sweep`
    run_eval(cfg, args)       the CLI verb's glue
    METRIC_KEYS, THESIS_KEYS, DISTANCE_KEYS, METRIC_LABELS, UNDEFINED, DISTANCE_UNIT, metric_label
                              the metric names and units every table of results shares
"""

from onet.evaluation.evaluate import EvalResult, evaluate_dataset, evaluate_inputs, evaluate_pairs
from onet.evaluation.run import run_eval
# exported under another name: `sweep` stays the submodule onet.evaluation.sweep
from onet.evaluation.sweep import SweepResult, run_sweep
from onet.evaluation.sweep import sweep as sweep_thresholds
from onet.evaluation.tables import (DISTANCE_KEYS, DISTANCE_UNIT, METRIC_KEYS, METRIC_LABELS, THESIS_KEYS,
                                    UNDEFINED, metric_label)

__all__ = ["DISTANCE_KEYS", "DISTANCE_UNIT", "METRIC_KEYS", "METRIC_LABELS", "THESIS_KEYS", "UNDEFINED",
           "metric_label", "EvalResult", "evaluate_dataset", "evaluate_inputs", "evaluate_pairs", "run_eval", "run_sweep",
           "sweep_thresholds", "SweepResult"]

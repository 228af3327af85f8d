"""Evaluation stage: `onet eval` (mesh metrics, per-class tables, threshold sweeps).

Public entry points (other stages and the CLI use only these):
    evaluate_dataset(...), evaluate_inputs(...), evaluate_pairs(...) -> EvalResult
    run_sweep(cfg, ...)       threshold sweep on the validation split
    run_eval(cfg, args)       the CLI verb's glue
    METRIC_KEYS, THESIS_KEYS, DISTANCE_KEYS, METRIC_LABELS, UNDEFINED, DISTANCE_UNIT, metric_label
                              the metric names and units every table of results shares
"""

from onet.evaluation.evaluate import EvalResult, evaluate_dataset, evaluate_inputs, evaluate_pairs
from onet.evaluation.run import run_eval
from onet.evaluation.sweep import run_sweep
from onet.evaluation.tables import (DISTANCE_KEYS, DISTANCE_UNIT, METRIC_KEYS, METRIC_LABELS, THESIS_KEYS,
                                    UNDEFINED, metric_label)

__all__ = ["DISTANCE_KEYS", "DISTANCE_UNIT", "METRIC_KEYS", "METRIC_LABELS", "THESIS_KEYS", "UNDEFINED",
           "metric_label", "EvalResult", "evaluate_dataset", "evaluate_inputs", "evaluate_pairs", "run_eval", "run_sweep"]

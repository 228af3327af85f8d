"""Evaluation stage: `onet eval` (mesh metrics, per-class tables, threshold sweeps).

Public entry points (other stages and the CLI use only these):
    evaluate_dataset(...), evaluate_inputs(...), evaluate_pairs(...) -> EvalResult
    run_sweep(cfg, ...)       threshold sweep on the validation split
    run_eval(cfg, args)       the CLI verb's glue
"""

from onet.evaluation.evaluate import EvalResult, evaluate_dataset, evaluate_inputs, evaluate_pairs
from onet.evaluation.run import run_eval
from onet.evaluation.sweep import run_sweep

__all__ = ["EvalResult", "evaluate_dataset", "evaluate_inputs", "evaluate_pairs", "run_eval", "run_sweep"]

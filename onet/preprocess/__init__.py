"""Preprocessing stage: `onet preprocess` (raw meshes -> dataset in the layout of DESIGN §4).

Orchestration lives here (finding inputs, watertighting, the per-object
pipeline, splits, the report); the geometry it uses is in `onet.geometry`.

Public entry points (other stages and the CLI use only these):
    preprocess_dataset(input_dir, output_dir, options=PreprocessOptions(...), ...)
    PreprocessOptions
    run_preprocess(args)      the CLI verb's glue
"""

from onet.preprocess.pipeline import PreprocessOptions, preprocess_dataset
from onet.preprocess.run import run_preprocess

__all__ = ["PreprocessOptions", "preprocess_dataset", "run_preprocess"]

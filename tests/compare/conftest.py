"""A run folder as `onet train` + `onet eval` leave it, for the compare tests."""

import pytest
import yaml

from onet.evaluation.metrics import MeshMetrics
from onet.evaluation.tables import ObjectRow, build_table, write_tables

OBJECTS = [("chair", "c0"), ("chair", "c1"), ("table", "t0")]


def make_run(folder, *, decoder="cbn_resnet", points=False, objects=OBJECTS, dataset="/data/synthetic", split="test",
             mode="dataset", eval_sub="eval", offset=0.0):
    """A run folder as `onet train` + `onet eval` leave it: config.yaml and eval/eval.json."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"model": {"decoder": decoder},
                                                        "evaluation": {"eval_dir": "eval"}}))
    rows = []
    for i, (category, model_id) in enumerate(objects):
        x = 0.1 * (i + 1) + offset
        rows.append(ObjectRow(category, model_id, MeshMetrics(
            iou=None if points else 0.5 + x, accuracy=0.01 + x / 10, completeness=0.02 + x / 10,
            chamfer_l1=0.015 + x / 10, chamfer_l2=0.001, normal_consistency=None if points else 0.8 + x / 10,
            fscore={0.01: 0.3 + x})))
    write_tables(rows, build_table(rows, class_names={"chair": "chair", "table": "table"}), folder / eval_sub,
                 extra_json={"mode": mode, "dataset": dataset, "split": split})
    return folder


@pytest.fixture
def run_factory():
    return make_run

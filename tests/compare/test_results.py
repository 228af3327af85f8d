"""Loading eval results of several runs and refusing runs that do not compare (exit code 2)."""

import json

import pytest

from onet.compare import compare_runs
from onet.compare.results import find_eval_file, load_result
from onet.utils.errors import UsageError

OBJECTS = [("chair", "c0"), ("chair", "c1"), ("table", "t0")]

def test_run_and_eval_folders_are_found(tmp_path, run_factory):
    run = run_factory(tmp_path / "onet")
    assert find_eval_file(run) == run / "eval" / "eval.json"
    assert find_eval_file(run / "eval") == run / "eval" / "eval.json"
    result = load_result(run)
    assert result.name == "ONet" and result.objects == {"chair/c0", "chair/c1", "table/t0"}
    assert load_result(run_factory(tmp_path / "r", decoder="r2n2")).name == "3D-R2N2"
    psgn = load_result(run_factory(tmp_path / "p", decoder="psgn", points=True))
    assert psgn.name == "PSGN" and psgn.mean.get("iou") is None and psgn.mean["chamfer_l1"] is not None


def test_folder_without_results_is_named(tmp_path, run_factory):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=f"{tmp_path / 'empty'}: no evaluation results"):
        compare_runs([run_factory(tmp_path / "a"), tmp_path / "empty"])
    with pytest.raises(UsageError, match="no such folder"):
        compare_runs([tmp_path / "missing"])
    (tmp_path / "bad" / "eval").mkdir(parents=True)
    (tmp_path / "bad" / "eval" / "eval.json").write_text(json.dumps({"columns": []}))
    with pytest.raises(UsageError, match="bad.*not an evaluation result"):
        compare_runs([tmp_path / "bad"])


@pytest.mark.parametrize("change, message", [
    ({"dataset": "/data/other"}, "evaluated on dataset /data/other"),
    ({"split": "val"}, "evaluated on split 'val'"),
    ({"objects": OBJECTS[:2]}, "evaluated 2 objects"),
    ({"objects": OBJECTS[:2] + [("table", "t9")]}, "evaluated 3 objects.*it has table/t9"),
])
def test_runs_on_other_data_are_refused_naming_the_folder(tmp_path, change, message, run_factory):
    a = run_factory(tmp_path / "a")
    b = run_factory(tmp_path / "b", decoder="r2n2", **change)
    with pytest.raises(UsageError, match=f"{b}: {message}"):
        compare_runs([a, b])


def test_eval_input_row_comes_first_and_must_be_an_input_result(tmp_path, run_factory):
    run = run_factory(tmp_path / "vox")
    run_factory(tmp_path / "vox", mode="input:voxels", eval_sub="eval/input", offset=-0.05)
    comparison = compare_runs([run], eval_input=run)
    assert [m.name for m in comparison.methods] == ["Input", "ONet"]
    with pytest.raises(UsageError, match="--eval-input wants"):
        compare_runs([run], eval_input=run / "eval")


def test_names_and_duplicates(tmp_path, run_factory):
    a, b = run_factory(tmp_path / "first"), run_factory(tmp_path / "second", offset=0.01)
    assert [m.name for m in compare_runs([a, b]).methods] == ["ONet (first)", "ONet (second)"]
    assert [m.name for m in compare_runs([a, b], names=["x", "y"]).methods] == ["x", "y"]
    with pytest.raises(UsageError, match="2 run folders"):
        compare_runs([a, b], names=["x"])
    with pytest.raises(UsageError, match="unknown metric"):
        compare_runs([a], metrics=["volume"])

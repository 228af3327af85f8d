"""Sharded evaluation: per-object records, merged by the final unsharded run into one process's tables."""

import shutil

import pytest
import trimesh

import onet.evaluation.evaluate as evaluate_module
from onet.data.dataset import list_items
from onet.evaluation import evaluate_dataset
from onet.evaluation.records import RECORDS_DIR

TABLES = ("eval_meshes.csv", "eval_classes.csv", "eval_classes.md", "eval_classes.tex", "eval.json")


@pytest.fixture
def predictions(tiny_dataset, tmp_path):
    """The references themselves as predictions, one missing and one unreadable: every status occurs."""
    items, _ = list_items(tiny_dataset, "train", None)
    pred = tmp_path / "pred"
    for cat, mid in items[1:]:
        (pred / cat).mkdir(parents=True, exist_ok=True)
        shutil.copy(tiny_dataset / cat / mid / "mesh.ply", pred / cat / f"{mid}.ply")
    cat, mid = items[-1]
    (pred / cat / f"{mid}.ply").write_bytes(b"ply\ngarbage")
    return items, pred


def _count_scoring(monkeypatch) -> list:
    calls = []
    real = evaluate_module.evaluate_mesh
    monkeypatch.setattr(evaluate_module, "evaluate_mesh", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_shards_merge_into_the_tables_of_one_process(tiny_dataset, predictions, tmp_path, monkeypatch):
    items, pred = predictions
    common = dict(n_points=2000, seed=3, progress=False)
    one = evaluate_dataset(tiny_dataset, items, pred, tmp_path / "one", **common)
    assert {r.status for r in one.rows} == {"ok", "missing", "unreadable"}

    sharded = tmp_path / "sharded"
    scored = []
    for i in range(3):
        part = evaluate_dataset(tiny_dataset, items, pred, sharded, shard=(i, 3), **common)
        assert "records" in part.files and not (sharded / "eval_meshes.csv").exists()  # shards write no tables
        scored += [(r.category, r.model_id) for r in part.rows]
    assert sorted(scored) == sorted(items)  # disjoint shares covering every object
    assert len(list((sharded / RECORDS_DIR).glob("dataset.shard*of3.jsonl"))) == 3

    calls = _count_scoring(monkeypatch)
    merged = evaluate_dataset(tiny_dataset, items, pred, sharded, **common)
    assert not calls  # everything came from the records
    for name in TABLES:
        assert (sharded / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    assert merged.problems == one.problems


def test_stale_or_foreign_records_are_scored_again(tiny_dataset, predictions, tmp_path, monkeypatch):
    items, pred = predictions
    out = tmp_path / "out"
    for i in range(2):
        evaluate_dataset(tiny_dataset, items, pred, out, shard=(i, 2), n_points=2000, progress=False)
    # a prediction changed after its shard scored it; a torn line from a killed shard
    cat, mid = items[1]
    mesh = trimesh.load(pred / cat / f"{mid}.ply", process=False)
    mesh.export(pred / cat / f"{mid}.ply", encoding="ascii")
    with open(next((out / RECORDS_DIR).glob("*.jsonl")), "a") as f:
        f.write('{"settings": {"mode": "dat')
    calls = _count_scoring(monkeypatch)
    evaluate_dataset(tiny_dataset, items, pred, out, n_points=2000, progress=False)
    assert len(calls) == 1
    # other settings (here the seed) ignore every record
    calls.clear()
    evaluate_dataset(tiny_dataset, items, pred, out, n_points=2000, seed=1, progress=False)
    assert len(calls) == len(items) - 2  # the missing and the unreadable prediction need no scoring

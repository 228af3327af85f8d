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


def test_worker_processes_give_the_tables_of_one_process(tiny_dataset, predictions, tmp_path, monkeypatch):
    items, pred = predictions
    common = dict(n_points=2000, seed=3, progress=False)
    one = evaluate_dataset(tiny_dataset, items, pred, tmp_path / "one", **common)
    calls = _count_scoring(monkeypatch)  # counts this process only: the workers are spawned
    two = evaluate_dataset(tiny_dataset, items, pred, tmp_path / "two", workers=2, **common)
    assert not calls  # every object was scored in a worker and merged from the records
    assert list((tmp_path / "two" / RECORDS_DIR).glob("dataset.shard*of*.jsonl"))
    for name in TABLES:
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    assert [(p.name, p.reason) for p in two.failures] == [(p.name, p.reason) for p in one.failures]
    assert two.problems == one.problems
    # a rerun finds everything recorded: no workers are started for nothing
    monkeypatch.setattr(evaluate_module, "_score_in_workers", lambda *a: pytest.fail("workers started"))
    evaluate_dataset(tiny_dataset, items, pred, tmp_path / "two", workers=2, **common)


def test_worker_count(monkeypatch):
    monkeypatch.setattr("onet.utils.parallel.usable_cpus", lambda: 4)
    per = evaluate_module.MIN_OBJECTS_PER_WORKER
    assert evaluate_module.resolve_workers(None, 100 * per) == 4
    assert evaluate_module.resolve_workers(None, 2 * per) == 2
    assert evaluate_module.resolve_workers(None, per - 1) == 1  # not worth starting a process
    assert evaluate_module.resolve_workers(3, 1) == 3
    for bad in (0, -1, True, 1.5, "2"):
        with pytest.raises(ValueError, match="workers must be"):
            evaluate_module.resolve_workers(bad, 10)


def test_without_worker_processes_this_process_scores_everything(tiny_dataset, predictions, tmp_path, monkeypatch):
    from concurrent.futures.process import BrokenProcessPool

    items, pred = predictions
    evaluate_dataset(tiny_dataset, items, pred, tmp_path / "one", n_points=2000, progress=False)

    def broken(workers):
        raise BrokenProcessPool("a worker died while starting")

    monkeypatch.setattr("onet.utils.parallel.worker_pool", broken)
    calls = _count_scoring(monkeypatch)
    evaluate_dataset(tiny_dataset, items, pred, tmp_path / "two", n_points=2000, progress=False, workers=2)
    assert len(calls) == len(items) - 2  # all but the missing and the unreadable prediction, here
    for name in TABLES:
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name

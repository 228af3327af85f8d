"""onet.utils.batch: the one per-item rule of preprocess, generate and eval (issue 12)."""

import csv
import errno

import pytest

from onet.utils.batch import ItemRunner, attempt, stops_the_run
from onet.utils.io import OutputWriteError


class Unusual(Exception):
    """An exception type no caller lists (like PIL's DecompressionBombError)."""


def _raise(exc):
    raise exc


def test_any_exception_of_an_item_is_recorded_and_the_batch_goes_on(tmp_path):
    logged = []
    runner = ItemRunner(log=logged.append)
    results = [runner.run(name, f"/in/{name}.png", fn) for name, fn in (
        ("a", lambda: 1), ("b", lambda: _raise(Unusual("too many pixels"))), ("c", lambda: _raise(KeyError("x"))),
        ("d", lambda: 4))]
    assert [r.value for r in results] == [1, None, None, 4]
    assert [(p.name, p.path, p.reason) for p in runner.failures] == [
        ("b", "/in/b.png", "Unusual: too many pixels"), ("c", "/in/c.png", "KeyError: 'x'")]
    assert logged == ["skipped b: Unusual: too many pixels", "skipped c: KeyError: 'x'"]
    assert runner.exit_code == 1
    runner.warn("d", "/in/d.png", "simplified to 10 faces, target 4")
    runner.write(tmp_path)
    assert [r["name"] for r in csv.DictReader((tmp_path / "failures.csv").open())] == ["b", "c"]
    assert [r["reason"] for r in csv.DictReader((tmp_path / "warnings.csv").open())] == ["simplified to 10 faces, target 4"]
    ItemRunner(log=logged.append).write(tmp_path)  # a clean rerun removes the stale lists
    assert not (tmp_path / "failures.csv").exists() and not (tmp_path / "warnings.csv").exists()


@pytest.mark.parametrize("exc", [OutputWriteError(errno.EACCES, "Permission denied", "out/a.ply"),
                                 OSError(errno.ENOSPC, "No space left on device"),
                                 OSError(errno.EROFS, "Read-only file system")])
def test_faults_of_the_run_stop_it(exc):
    assert stops_the_run(exc)
    with pytest.raises(OSError):
        attempt(_raise, exc)


def test_an_unreadable_input_is_the_items_fault_and_ctrl_c_is_never_caught():
    assert not attempt(_raise, PermissionError(errno.EACCES, "Permission denied", "in/a.png")).ok
    assert not attempt(_raise, MemoryError()).ok
    with pytest.raises(KeyboardInterrupt):
        attempt(_raise, KeyboardInterrupt())

import os

import pytest

from onet.utils.parallel import SINGLE_THREAD_ENV, prefetched, spawn_pool, usable_cpus


def _env():
    return {k: os.environ.get(k) for k in SINGLE_THREAD_ENV}


def test_workers_are_single_threaded_and_the_parent_environment_is_restored(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    before = _env()
    with spawn_pool(2) as pool:
        child = pool.submit(_env).result()
        pids = {pool.submit(os.getpid).result() for _ in range(8)}
    assert child == {k: "1" for k in SINGLE_THREAD_ENV}
    assert _env() == before
    assert os.getpid() not in pids


@pytest.mark.parametrize("workers", [0, -2, 2.0, True, "2"])
def test_bad_worker_counts_are_refused(workers):
    with pytest.raises(ValueError, match="workers"):
        spawn_pool(workers)


def test_usable_cpus_follows_the_affinity_mask():
    assert 1 <= usable_cpus() <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        assert usable_cpus() == len(os.sched_getaffinity(0))


def test_leaving_a_worker_pool_by_an_exception_stops_its_workers_at_once():
    import time
    from concurrent.futures import as_completed

    from onet.utils.parallel import worker_pool

    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        with worker_pool(2) as pool:
            futures = [pool.submit(time.sleep, 60) for _ in range(4)]
            processes = list(pool._processes.values())  # started by the submits
            raise KeyboardInterrupt  # Ctrl-C while tasks of a minute run: no waiting for them
    assert time.perf_counter() - start < 20
    assert processes and not any(p.is_alive() for p in processes)
    # each task cancelled or failed, once the pool's own thread has seen its workers go
    deadline = time.perf_counter() + 20
    while not all(f.cancelled() or f.done() for f in futures) and time.perf_counter() < deadline:
        time.sleep(0.05)
    assert all(f.cancelled() or f.done() for f in futures)
    # left normally, the tasks finish first
    with worker_pool(2) as pool:
        futures = [pool.submit(pow, 2, k) for k in range(8)]
    assert sorted(f.result() for f in as_completed(futures)) == [2 ** k for k in range(8)]


def test_prefetched_produces_the_next_item_while_the_caller_holds_this_one():
    import threading

    produced = []  # (item, thread name)
    taken = threading.Event()

    def source():
        for k in range(4):
            if k == 2:
                assert taken.wait(5)  # item 2 is made while the caller still holds item 1
            produced.append((k, threading.current_thread().name))
            yield k

    got = []
    for item in prefetched(source()):
        got.append(item)
        if item == 1:
            taken.set()
            for _ in range(500):  # the background thread makes item 2 meanwhile
                if len(produced) > 2:
                    break
                threading.Event().wait(0.01)
            assert [k for k, _ in produced] == [0, 1, 2]
    assert got == [0, 1, 2, 3]
    assert all(name.startswith("onet-prefetch") for _, name in produced)


def test_prefetched_raises_where_the_source_failed_and_closes_early():
    def source():
        yield 1
        raise ValueError("cannot load item 2")

    items = prefetched(source())
    assert next(items) == 1
    with pytest.raises(ValueError, match="cannot load item 2"):
        next(items)
    early = prefetched(iter(range(10)))
    assert next(early) == 0
    early.close()  # waits for the item in flight; nothing left running
    assert list(prefetched([])) == []


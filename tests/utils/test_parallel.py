import os

import pytest

from onet.utils.parallel import SINGLE_THREAD_ENV, spawn_pool, usable_cpus


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

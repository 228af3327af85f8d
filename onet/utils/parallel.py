"""Worker processes for per-object batch work (dataset building, preprocessing).

One mechanism for every stage that fans objects out to processes: `spawn` children
(no threads, locks or CUDA state inherited from a parent that has torch loaded), each
limited to one BLAS/OpenMP thread so that N workers use N cores instead of N x cores.
`prefetched` runs an iterator one item ahead in a thread (input loading beside the device).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
_END = object()

SINGLE_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. under taskset or a container's cpuset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _single_threaded() -> None:
    # a worker started later than the pool (none is, see spawn_pool) or one whose
    # start-up imported torch before this ran still ends up with one thread
    os.environ.update({k: "1" for k in SINGLE_THREAD_ENV})
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def spawn_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of `workers` single-threaded spawn processes, all started before it is returned."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"), initializer=_single_threaded)
    # spawn children start on demand and inherit os.environ as it is then, and BLAS/OpenMP
    # read their thread counts when they load: so start them all now, with one thread in
    # the environment, and restore the parent's environment after
    saved = {k: os.environ.get(k) for k in SINGLE_THREAD_ENV}
    os.environ.update({k: "1" for k in SINGLE_THREAD_ENV})
    try:
        started = [pool.submit(int) for _ in range(workers)]  # no idle worker yet: each submit starts one
        for fut in started:
            fut.result()
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return pool


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop a pool now: queued tasks are dropped and the workers killed, running tasks with them.

    For an interrupt or an error: `shutdown(wait=True)` would first finish every running task
    (a large mesh: minutes), and a second Ctrl-C during that wait left the workers waiting for
    work that never came and the process hanging at exit. Callers write their outputs
    atomically, so a killed task leaves at most temporaries that a rerun removes.
    """
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        terminate()
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())  # before 3.14: the only handle
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    # join() can return early while the pool's own thread handles the same processes
    # (seen: 1 worker in 16 still alive): poll, then kill what is left
    deadline = time.monotonic() + 10
    while any(p.is_alive() for p in processes) and time.monotonic() < deadline:
        time.sleep(0.01)
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join(timeout=5)


@contextmanager
def stopping(pool: ProcessPoolExecutor) -> Iterator[ProcessPoolExecutor]:
    """A pool for a `with` block: on leaving it normally the workers finish and exit; on an
    exception (an error, Ctrl-C, a generator closed early) they are stopped at once (`stop_pool`)."""
    try:
        yield pool
    except BaseException:
        stop_pool(pool)
        raise
    pool.shutdown(wait=True)


def worker_pool(workers: int):
    """`spawn_pool(workers)` for a `with` block, stopped at once on an exception (`stopping`)."""
    return stopping(spawn_pool(workers))


def prefetched(items: Iterable[T]) -> Iterator[T]:
    """`items` in order, each produced in a background thread while the caller uses the one before.

    For input loading (JPEG decoding, npz reading: work that releases the GIL) beside a device
    that computes on the previous batch. One thread, one item ahead: the source is never advanced
    concurrently, and its exceptions reach the caller at the item where they happened. Closing
    the iterator early waits for the item in flight.
    """
    source = iter(items)
    with ThreadPoolExecutor(1, thread_name_prefix="onet-prefetch") as thread:
        pending = thread.submit(next, source, _END)
        while True:
            item = pending.result()
            if item is _END:
                return
            pending = thread.submit(next, source, _END)
            yield item

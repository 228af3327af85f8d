"""`onet train` as several single-threaded processes on one CPU (train.cpu_processes).

A small model's step is many short operations, and a second thread inside each costs more CPU
time than it saves; data-parallel processes of one thread each make more iterations from the
same cores (README "One process per core": 1.13-1.40x on 2 cores). With `train.cpu_processes`
above 1 (or `auto`) on a CPU, `onet train` starts that many copies of itself with the
environment torchrun would give them (gloo over a free local port) and waits for them; the
trainer's DDP path does the rest (the global batch split between the processes, the CPU budget summed over them).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from onet.utils.errors import ConfigError
from onet.utils.parallel import SINGLE_THREAD_ENV, usable_cpus

# auto never gives a process fewer objects of the global batch than this: below it the
# per-process steps get too small for the gradient all-reduce to pay
MIN_OBJECTS_PER_PROCESS = 4


def resolve_cpu_processes(value, batch_size: int, cpus: int) -> int:
    """Processes for `train.cpu_processes` = VALUE (an integer >= 1 or "auto").

    auto: one per CPU, at most one per MIN_OBJECTS_PER_PROCESS objects of the batch, and a divisor
    of the batch (every process takes the same share of it); an explicit count must divide it.
    """
    if value == "auto":
        limit = max(1, min(cpus, batch_size // MIN_OBJECTS_PER_PROCESS))
        return max(n for n in range(1, limit + 1) if batch_size % n == 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"config key 'train.cpu_processes' must be an integer >= 1 or 'auto', got {value!r}")
    if batch_size % value:
        raise ConfigError(f"config key 'train.cpu_processes' ({value}) must divide train.batch_size ({batch_size}): "
                          "every process takes the same share of the batch")
    return value


def processes_for(cfg: dict, device_type: str, *, cpus: int | None = None) -> int:
    """How many processes `onet train` of CFG starts: 1 unless on a CPU, not already under
    torchrun (WORLD_SIZE set), with train.cpu_processes above 1."""
    value = cfg["train"].get("cpu_processes", 1)
    n = resolve_cpu_processes(value, int(cfg["train"]["batch_size"]), cpus or usable_cpus())
    if device_type != "cpu" or "WORLD_SIZE" in os.environ:
        return 1
    return n


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(argv: list[str], processes: int, *, cpus: int | None = None, log=print) -> int:
    """Run `python -m onet ARGV` as PROCESSES ranks of one data-parallel job on this machine (the
    environment torchrun would give them); returns the job's exit code: 0, or the first failed
    rank's (the others are stopped then). Rank 0 speaks; another rank's errors are shown when
    rank 0 did not fail itself (all ranks meet the same bad file: it is said once)."""
    threads = max(1, (cpus or usable_cpus()) // processes)
    log(f"training as {processes} processes x {threads} thread{'s' if threads > 1 else ''} "
        f"(train.cpu_processes; data-parallel on this CPU, the batch split between them)")
    base = {**os.environ, **{name: str(threads) for name in SINGLE_THREAD_ENV},
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": str(processes),
            "LOCAL_WORLD_SIZE": str(processes)}
    with tempfile.TemporaryDirectory(prefix="onet-ranks-") as tmp:
        errs = [None] + [open(Path(tmp) / f"rank{r}.err", "w+") for r in range(1, processes)]
        ranks = [subprocess.Popen([sys.executable, "-m", "onet", *argv], stderr=errs[r],
                                  stdout=None if r == 0 else subprocess.DEVNULL,
                                  env={**base, "RANK": str(r), "LOCAL_RANK": str(r)})
                 for r in range(processes)]
        try:
            failed = _wait(ranks)
        except BaseException:  # Ctrl-C or SIGTERM reached this process: no rank is left behind
            _stop(ranks)
            raise
        finally:
            for f in errs[1:]:
                f.close()
        if failed is None:
            return 0
        _stop(ranks)
        if failed != 0 and ranks[0].returncode in (0, None, -signal.SIGTERM):
            sys.stderr.write((Path(tmp) / f"rank{failed}.err").read_text())
        return ranks[failed].returncode if ranks[failed].returncode > 0 else 1


def _wait(ranks: list[subprocess.Popen]) -> int | None:
    """Index of the first rank that fails, or None when every rank exits 0."""
    while True:
        codes = [p.poll() for p in ranks]
        bad = [r for r, c in enumerate(codes) if c not in (None, 0)]
        if bad:
            return bad[0]
        if all(c == 0 for c in codes):
            return None
        time.sleep(0.2)


def _stop(ranks: list[subprocess.Popen]) -> None:
    for p in ranks:
        if p.poll() is None:
            p.terminate()
    for p in ranks:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

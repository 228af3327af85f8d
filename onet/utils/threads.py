"""How many threads a CPU loop's steps use, chosen from the steps' own times.

Why: torch's parallel regions end in a barrier, so a step on all cores runs at the pace of
its slowest thread. When another process holds one of the cores, the thread that shares it
is descheduled for whole time slices and the others spin or wait at every barrier: on a
2-core AMD EPYC with one busy Python process beside it, the demo's bf16 training step took
0.44-0.51 s on 2 threads and 0.21-0.25 s on 1 (unloaded: 0.14 s on 2, 0.22 s on 1). Nothing
outside the process says which count is faster (a load average does not tell a
descheduled thread from an idle core), so `ThreadGovernor` tries the neighbouring count on
a few steps now and then and keeps whichever ran faster.

The thread count can change the rounding of sums that span the threads (a training step's
batch statistics and weight gradients), so training with a governor is not bit-for-bit
reproducible (its numbers are equally valid); evaluating a network on points is: each
point's output is its own row of the products, whatever the count.
"""

from __future__ import annotations

import statistics
from collections import deque
from typing import Callable

import torch


class ThreadGovernor:
    """Picks the intra-op thread count (between 1 and `threads`) for a loop of like steps.

    Call `step_done(seconds)` after each step, with its wall time. The steps run at the
    current count; at step `first`, then every `every` steps (doubling, up to `max_every`,
    after each trial that did not switch), and as soon as the steps run a third slower than
    usual, `trial` steps run at the neighbouring count (one fewer; one more when below
    `threads`). The first of them pays for the change and is not counted; the count switches
    when the median of the others is `margin` below the median of the last steps at the
    current count. `changes` lists the switches as (step, old count, new count, old median s,
    new median s); `on_change` is called with each as it happens (for the log).

    Unloaded, the trials cost about (trial - 1) x (slowdown) / every of the steps: on 2 cores
    3 x 0.6 / 100 = 2% at first, 0.5% once the interval has grown to 400 steps.
    """

    def __init__(self, threads: int, *, first: int = 10, every: int = 100, max_every: int = 400, trial: int = 4,
                 margin: float = 0.15, slowdown: float = 4 / 3, window: int = 9,
                 set_threads: Callable[[int], None] = torch.set_num_threads,
                 on_change: Callable[[tuple[int, int, int, float, float]], None] | None = None):
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if trial < 2:
            raise ValueError(f"trial must be >= 2 (its first step is not counted), got {trial}")
        self.max_threads, self.threads = threads, threads
        self.every, self.max_every, self.trial, self.margin = every, max_every, trial, margin
        self.slowdown, self._set, self.on_change = slowdown, set_threads, on_change
        self.changes: list[tuple[int, int, int, float, float]] = []
        self.steps = 0
        self._recent: deque[float] = deque(maxlen=window)  # step times at the current count
        self._usual: float | None = None  # their lowest median at this count: a slowdown from it tries early
        self._interval = every
        self._next_trial = first
        self._trying: int | None = None  # the count on trial
        self._trial_times: list[float] = []
        self._down_next = True  # which neighbour the next trial takes, where both exist
        self._early = False  # the trial under way was started by a slowdown, not the schedule

    def step_done(self, seconds: float) -> None:
        """Record a step's time (or its cost per unit of work, where steps differ in size)."""
        self.steps += 1
        if self._trying is not None:
            self._trial_times.append(seconds)
            if len(self._trial_times) == self.trial:
                self._decide()
            return
        self._recent.append(seconds)
        if len(self._recent) < self._recent.maxlen:
            return
        median = statistics.median(self._recent)
        self._usual = median if self._usual is None else min(self._usual, median)
        # slower steps than usual at this count: perhaps another process took a core, try now
        self._early = median > self.slowdown * self._usual
        if self._early or self.steps >= self._next_trial:
            self._start_trial()

    def _neighbour(self) -> int | None:
        down = self.threads - 1 if self.threads > 1 else None
        up = self.threads + 1 if self.threads < self.max_threads else None
        if down is not None and up is not None:
            pick, self._down_next = (down if self._down_next else up), not self._down_next
            return pick
        return down if down is not None else up

    def _start_trial(self) -> None:
        candidate = self._neighbour()
        if candidate is None:  # a single thread allowed: nothing to choose
            self._next_trial = float("inf")
            return
        self._trying, self._trial_times = candidate, []
        self._set(candidate)

    def _decide(self) -> None:
        current = statistics.median(self._recent)
        tried = statistics.median(self._trial_times[1:])
        if tried < (1 - self.margin) * current:
            change = (self.steps, self.threads, self._trying, current, tried)
            self.changes.append(change)
            if self.on_change is not None:
                self.on_change(change)
            self.threads = self._trying
            self._recent.clear()
            self._recent.extend(self._trial_times[1:])
            self._interval = self.every
            self._usual = None
        else:
            self._set(self.threads)
            self._interval = min(2 * self._interval, self.max_every)
            self._recent.clear()  # the steps after the switch back start a fresh window
            if self._early:  # slower at either count (the machine, not this choice): the new usual
                self._usual = current
        self._trying, self._trial_times = None, []
        self._next_trial = self.steps + self._interval


def describe_change(change: tuple[int, int, int, float, float], unit: str = "s per step", scale: float = 1.0) -> str:
    """A switch from `ThreadGovernor.changes` as a log line; the costs times `scale` in `unit`."""
    _, old, new, old_s, new_s = change
    why = "another process may hold a core" if new < old else "more of the CPU is free again"
    return (f"{new} CPU thread{'s' if new != 1 else ''} instead of {old}: "
            f"{new_s * scale:.3f} {unit} against {old_s * scale:.3f} ({why})")


def thread_governor(setting, device, *, key: str, distributed: bool = False, log=None,
                    on_change=None) -> ThreadGovernor | None:
    """Apply a stage's `cpu_threads` key (`key`, e.g. "train.cpu_threads") on `device`: None keeps
    torch's thread count, an integer sets it; "auto" returns a ThreadGovernor for the stage's loop (calling
    `on_change` at each switch), where there is a choice (a CPU, more than one thread, not one
    of torchrun's processes, which keep their share of the cores). The caller restores the
    count after the stage. `log`: None for silence."""
    if getattr(device, "type", device) != "cpu" or setting is None:  # None: torch's count as it is
        return None
    if setting != "auto":
        torch.set_num_threads(int(setting))
        if log:
            log(f"CPU threads: {setting} ({key})")
        return None
    threads = torch.get_num_threads()
    if distributed or threads == 1:
        return None
    if log:
        log(f"CPU threads: {threads} ({key}=auto: another count is tried now and then and kept if it "
            "runs faster, e.g. 1 while another process holds a core; each change is logged)")
    return ThreadGovernor(threads, on_change=on_change)

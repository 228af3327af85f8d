import random

import pytest
import torch

from onet.utils.threads import ThreadGovernor, describe_change, thread_governor


class Machine:
    """Step times of a 2-core CPU (the figures measured for the demo's step), with another
    process holding a core during `loaded` steps, and the thread counts the governor set."""

    def __init__(self, loaded=lambda step: False, drift=lambda step: 1.0, seed=0):
        self.loaded, self.drift, self.rng = loaded, drift, random.Random(seed)
        self.threads, self.sets, self.step = 2, [], 0

    def set(self, n):
        self.threads = n
        self.sets.append((self.step, n))

    def run(self, governor, steps):
        spent = best = 0.0
        for _ in range(steps):
            table = {2: 0.47, 1: 0.22} if self.loaded(self.step) else {2: 0.14, 1: 0.22}
            seconds = table[self.threads] * self.drift(self.step) * self.rng.uniform(0.9, 1.1)
            spent += seconds
            best += min(table.values()) * self.drift(self.step)
            self.step += 1
            governor.step_done(seconds)
        return spent / best


def test_a_busy_core_makes_it_drop_a_thread_at_the_first_trial():
    m = Machine(loaded=lambda step: True)
    g = ThreadGovernor(2, first=10, set_threads=m.set)
    ratio = m.run(g, 1000)
    assert [(c[0], c[1], c[2]) for c in g.changes] == [(14, 2, 1)]  # trial steps 11-14
    assert g.threads == m.threads == 1
    assert ratio < 1.05  # the first steps and the trials of 2 threads cost under 5%


def test_unloaded_it_keeps_all_threads_and_its_trials_cost_little():
    m = Machine()
    g = ThreadGovernor(2, set_threads=m.set)
    ratio = m.run(g, 3000)
    assert g.changes == [] and m.threads == 2
    assert m.sets[0] == (10, 1) and m.sets[1] == (14, 2)  # tried at step 10, back after 4 steps
    assert ratio < 1.02
    gaps = [b[0] - a[0] for a, b in zip(m.sets[1::2], m.sets[2::2])]
    assert gaps[-1] >= 400  # the interval grew (counting the window that refills after each trial)


def test_it_follows_the_load_down_and_back_up():
    m = Machine(loaded=lambda step: 300 <= step < 1500)
    g = ThreadGovernor(2, set_threads=m.set)
    m.run(g, 3000)
    (down_at, _, down, *_), (up_at, _, up, *_) = g.changes
    assert down == 1 and 300 < down_at < 330  # a slowdown starts a trial before the schedule does
    assert up == 2 and 1500 < up_at < 1500 + 400 + 30


def test_a_machine_slower_at_every_count_is_not_a_reason_to_switch_or_keep_trying():
    m = Machine(drift=lambda step: 1.5 if step >= 500 else 1.0)
    g = ThreadGovernor(2, set_threads=m.set)
    m.run(g, 3000)
    assert g.changes == []
    trials = [s for s, n in m.sets if n == 1]
    assert len([s for s in trials if 500 <= s < 600]) == 1  # one early trial, then the new usual


def test_one_thread_allowed_means_nothing_to_choose():
    m = Machine()
    m.threads = 1
    g = ThreadGovernor(1, set_threads=m.set)
    m.run(g, 500)
    assert m.sets == [] and g.changes == []


def test_on_more_cores_it_tries_both_neighbours():
    sets = []
    g = ThreadGovernor(8, first=10, every=20, set_threads=sets.append)
    g.threads = 6  # as after two switches down
    for _ in range(200):
        g.step_done(0.1)
    assert {5, 7} <= set(sets) and not {4, 8} & set(sets)


def test_arguments_and_the_log_line():
    with pytest.raises(ValueError, match="threads"):
        ThreadGovernor(0)
    with pytest.raises(ValueError, match="trial"):
        ThreadGovernor(2, trial=1)
    assert describe_change((14, 2, 1, 0.47, 0.22)) == (
        "1 CPU thread instead of 2: 0.220 s per step against 0.470 (another process may hold a core)")
    assert describe_change((900, 1, 2, 2.2e-6, 1.4e-6), "ms per 1000 points", 1e6) == (
        "2 CPU threads instead of 1: 1.400 ms per 1000 points against 2.200 (more of the CPU is free again)")


def test_each_switch_is_handed_to_on_change_as_it_happens():
    m = Machine(loaded=lambda step: True)
    seen = []
    g = ThreadGovernor(2, set_threads=m.set, on_change=lambda change: seen.append((m.step, change)))
    m.run(g, 100)
    assert seen == [(14, g.changes[0])]


def test_thread_governor_applies_the_key():
    before = torch.get_num_threads()
    lines = []
    try:
        torch.set_num_threads(2)
        assert thread_governor(None, torch.device("cpu"), key="train.cpu_threads", log=lines.append) is None
        assert torch.get_num_threads() == 2 and lines == []  # null: torch's count, untouched
        assert thread_governor(1, torch.device("cpu"), key="train.cpu_threads", log=lines.append) is None
        assert torch.get_num_threads() == 1 and lines == ["CPU threads: 1 (train.cpu_threads)"]
        torch.set_num_threads(2)
        g = thread_governor("auto", torch.device("cpu"), key="generation.cpu_threads", log=lines.append)
        assert isinstance(g, ThreadGovernor) and g.max_threads == 2
        assert lines[-1].startswith("CPU threads: 2 (generation.cpu_threads=auto: ")
        # no choice to make: torchrun's processes keep their share, a GPU's threads only feed it
        assert thread_governor("auto", torch.device("cpu"), key="k", distributed=True) is None
        assert thread_governor("auto", torch.device("cuda"), key="k") is None
        assert thread_governor(3, torch.device("cuda"), key="k") is None and torch.get_num_threads() == 2
        torch.set_num_threads(1)
        assert thread_governor("auto", torch.device("cpu"), key="k") is None
    finally:
        torch.set_num_threads(before)


def test_it_sets_torch_threads():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        g = ThreadGovernor(2, first=1, window=1)
        g.step_done(1.0)  # window full, trial due: 1 thread now
        assert torch.get_num_threads() == 1
        for _ in range(4):
            g.step_done(1.0)  # no faster: back to 2
        assert torch.get_num_threads() == 2 and g.changes == []
    finally:
        torch.set_num_threads(before)

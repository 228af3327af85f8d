import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from onet.config import CONFIG_DIR, load_config
from onet.training import train
from onet.utils.checkpoints import load_checkpoint


def test_train_writes_config_checkpoints_and_metrics(tiny_cfg):
    result = train(tiny_cfg, progress=False, log=lambda *a: None)
    out = result.out_dir
    assert result.iterations == 4 and "max_iters" in result.stop_reason
    assert yaml.safe_load((out / "config.yaml").read_text()) == tiny_cfg
    ckpt = load_checkpoint(out / "model.pt")
    assert ckpt["it"] == 4 and ckpt["model_config"] == tiny_cfg["model"]
    assert {"model", "optimizer", "epoch", "best_metric", "rng", "config"} <= set(ckpt)
    best = load_checkpoint(out / "model_best.pt")
    assert best["best_metric"] == pytest.approx(result.best_metric)
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["it"]) for r in rows if r["loss"]] == [1, 2, 3, 4]
    assert all(0.0 <= float(r["val_iou"]) <= 1.0 for r in rows if r["val_iou"])


def test_a_run_stopping_between_validations_validates_its_last_model(tiny_cfg):
    # a budget ends off the validation grid: the last model (smallest learning rates) is a candidate too
    tiny_cfg["train"].update(max_iters=5, validate_every=2)
    result = train(tiny_cfg, progress=False, log=lambda *a: None)
    rows = list(csv.DictReader(open(result.out_dir / "metrics.csv")))
    assert [int(r["it"]) for r in rows if r["val_iou"]] == [2, 4, 5]
    last = next(r for r in rows if r["val_iou"] and int(r["it"]) == 5)
    assert float(last["val_iou"]) == pytest.approx(result.last_val["val_iou"])
    best = max(float(r["val_iou"]) for r in rows if r["val_iou"])
    assert load_checkpoint(result.out_dir / "model_best.pt")["best_metric"] == pytest.approx(best)
    # stopping on the grid validates once, not twice
    tiny_cfg["train"].update(max_iters=6)
    again = train(tiny_cfg, progress=False, log=lambda *a: None)
    rows = list(csv.DictReader(open(again.out_dir / "metrics.csv")))
    assert [int(r["it"]) for r in rows if r["val_iou"]] == [2, 4, 5, 6]


@pytest.mark.parametrize("tolerance, chosen", [(0.0, 2), (0.01, 3), (0.03, 5)])
def test_model_selection_tolerance_prefers_the_latest_checkpoint_near_the_best(tiny_cfg, monkeypatch, tolerance, chosen):
    from onet.training import trainer
    # a noisy plateau: the maximum at iteration 2, then 0.005, 0.02 and 0.015 below it
    scores = iter([0.40, 0.50, 0.495, 0.48, 0.485])
    monkeypatch.setattr(trainer, "validate", lambda *a, **k: {"val_loss": 1.0, "val_iou": next(scores), "val_skipped": 0})
    tiny_cfg["train"].update(max_iters=5, validate_every=1, model_selection_tolerance=tolerance)
    result = train(tiny_cfg, progress=False, log=lambda *a: None)
    best = load_checkpoint(result.out_dir / "model_best.pt")
    assert best["it"] == chosen and best["best_metric"] == pytest.approx(0.50) == result.best_metric


def test_selection_rule_in_both_directions():
    from onet.training.trainer import _selection
    assert _selection(0.3, None, "max", 0.0) == (True, False)
    assert _selection(0.49, 0.5, "max", 0.0) == (False, False)
    assert _selection(0.5, 0.5, "max", 0.0) == (False, False)  # strict: a tie keeps the earlier one
    assert _selection(0.5, 0.5, "max", 0.01) == (False, True)
    assert _selection(0.485, 0.5, "max", 0.01) == (False, False)
    assert _selection(10.5, 10.0, "min", 1.0) == (False, True)  # a loss: lower is better
    assert _selection(9.0, 10.0, "min", 1.0) == (True, False)
    assert _selection(11.5, 10.0, "min", 1.0) == (False, False)


def test_iteration_clock_times_its_window_only(monkeypatch):
    from onet.training import trainer
    now = [100.0]
    cpu = [7.0]
    monkeypatch.setattr(trainer.time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(trainer.time, "process_time", lambda: cpu[0])
    clock = trainer.IterationClock(10, skip=2, window=3)  # times iterations 13, 14 and 15

    def step(it, seconds):
        now[0] += seconds
        cpu[0] += 1.5 * seconds  # a process keeping 1.5 cores busy
        return clock.tick(it)

    assert [step(11, 5.0), step(12, 5.0), step(13, 1.0)] == [None, None, None]
    now[0] += 30.0  # a validation
    clock.restart()
    assert step(14, 2.0) is None
    assert clock.cpu_per_it is None
    assert step(15, 3.0) == pytest.approx(2.0) and clock.cpu_per_it == pytest.approx(3.0)
    assert step(16, 9.0) is None  # said once


def test_pace_message_counts_what_is_left():
    from onet.training.trainer import pace_message
    tcfg = {"max_iters": 2000, "validate_every": 400}
    assert pace_message(35, 0.3, tcfg) == ("[it 35] 0.300 s per iteration: the remaining 1965 iterations take "
                                           "about 9.8 min, plus 5 validations")
    # off the grid: the last model is validated too
    assert pace_message(35, 0.3, {"max_iters": 1000, "validate_every": 400}).endswith("plus 3 validations")
    assert pace_message(35, 0.3, {"max_iters": None, "validate_every": 400}) == "[it 35] 0.300 s per iteration"
    # a budget instead of a count: the iterations it leaves room for, the tighter budget deciding
    budget = {"max_iters": None, "validate_every": 500}
    assert pace_message(35, 0.25, budget, cpu_per_it=0.5, cpu_left=3000.0) == (
        "[it 35] 0.250 s per iteration (0.500 CPU s): train.max_cpu_time leaves 3000 CPU s, about 6,000 more "
        "iterations in 25.0 min (fewer: validations spend the budget too)")
    assert "train.max_time leaves 600 s, about 2,400 more iterations in 10.0 min" in pace_message(
        35, 0.25, budget, cpu_per_it=0.5, cpu_left=3000.0, time_left=600.0)
    # a count that ends the run before the budget: the count's message alone
    assert pace_message(35, 0.3, {"max_iters": 1000, "validate_every": 400}, cpu_per_it=0.5,
                        cpu_left=10_000.0).endswith("about 4.8 min, plus 3 validations")
    # a budget that ends it first: where it stops, not before train.min_iters
    demo = {"max_iters": 2000, "validate_every": 400, "min_iters": 1700}
    assert pace_message(35, 0.3, demo, time_left=540.0).endswith(
        "plus 5 validations; train.max_time leaves 540 s, so it stops near iteration 1,835")
    assert pace_message(35, 0.3, demo, time_left=300.0).endswith(
        "train.max_time leaves 300 s, so it stops near iteration 1,700 (train.min_iters)")
    assert pace_message(35, 0.3, {"max_iters": 1000, "validate_every": 400}, cpu_per_it=0.5,
                        cpu_left=10.0).endswith("train.max_cpu_time leaves 10 CPU s, so it stops near iteration 55")


def test_time_limits_do_not_stop_a_run_before_min_iters(tiny_cfg):
    # a time limit long past at the first check: without the floor no iteration runs at all
    tiny_cfg["train"].update(max_iters=6, max_time=1e-6, min_iters=3, validate_every=1000, checkpoint_every=1000)
    result = train(tiny_cfg, progress=False, log=lambda *a: None)
    assert result.iterations == 3 and result.stop_reason == "reached train.max_time=1e-06s"
    # the count still ends it where the clock does not
    tiny_cfg["train"].update(max_time=None, out_dir=str(Path(tiny_cfg["out_dir"]) / "counted"))
    assert train(tiny_cfg, progress=False, log=lambda *a: None).iterations == 6


def test_min_iters_above_max_iters_is_refused(tmp_path):
    res = subprocess.run([sys.executable, "-m", "onet", "train", "configs/demo.yaml", f"out_dir={tmp_path}",
                          "train.min_iters=2500"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "train.min_iters (2500) is more than train.max_iters (2000)" in res.stderr


def test_a_run_logs_its_pace_once(tiny_cfg):
    tiny_cfg["train"].update(max_iters=40, validate_every=1000, checkpoint_every=1000)
    lines = []
    train(tiny_cfg, progress=False, log=lines.append)
    paces = [line for line in lines if "s per iteration" in line]
    assert len(paces) == 1 and paces[0].startswith("[it 35] ")
    assert "the remaining 5 iterations take about" in paces[0] and paces[0].endswith("plus 1 validation")


def test_a_budgeted_run_logs_the_iterations_its_budget_allows(tiny_cfg):
    # no iteration count: epochs end this run, the CPU budget is what the message speaks of
    tiny_cfg["train"].update(max_iters=None, max_epochs=40, max_cpu_time=10_000.0, lr_schedule="constant",
                             validate_every=1000, checkpoint_every=1000)
    lines = []
    train(tiny_cfg, progress=False, log=lines.append)
    paces = [line for line in lines if "s per iteration" in line]
    assert len(paces) == 1 and paces[0].startswith("[it 35] ")
    assert "train.max_cpu_time leaves" in paces[0] and "more iterations in" in paces[0]


def test_resume_continues_the_iteration_count(tiny_cfg):
    train(tiny_cfg, progress=False, log=lambda *a: None)
    tiny_cfg["train"]["max_iters"] = 6
    result = train(tiny_cfg, progress=False, log=lambda *a: None)
    assert result.iterations == 6
    rows = list(csv.DictReader(open(result.out_dir / "metrics.csv")))
    assert [int(r["it"]) for r in rows if r["loss"]] == [1, 2, 3, 4, 5, 6]


def test_resume_on_another_training_split_is_refused(tiny_cfg, tiny_dataset, tmp_path):
    import shutil
    from onet.config import ConfigError
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    tiny_cfg["data"]["path"] = str(data)
    train(tiny_cfg, progress=False, log=lambda *a: None)
    recorded = load_checkpoint(os.path.join(tiny_cfg["out_dir"], "model.pt"))["train_split"]
    # the lists rewritten (as a larger built-in dataset does): a test object now listed for training
    lst, test = data / "table" / "train.lst", (data / "table" / "test.lst").read_text().split()
    lst.write_text(lst.read_text() + test[0] + "\n")
    tiny_cfg["train"]["max_iters"] = 6
    with pytest.raises(ConfigError, match=r"model\.pt was trained on another training split .*another out_dir"):
        train(tiny_cfg, progress=False, log=lambda *a: None)
    # the same lists again: the resume goes on
    lst.write_text("\n".join(t for t in lst.read_text().split() if t != test[0]) + "\n")
    result = train(tiny_cfg, progress=False, log=lambda *a: None)
    assert result.iterations == 6
    assert load_checkpoint(result.out_dir / "model.pt")["train_split"] == recorded


def test_same_seed_gives_the_same_validation_numbers(tiny_cfg, tmp_path):
    a = train(tiny_cfg, progress=False, log=lambda *a: None)
    tiny_cfg["out_dir"] = str(tmp_path / "again")
    b = train(tiny_cfg, progress=False, log=lambda *a: None)
    assert a.last_val["val_loss"] == b.last_val["val_loss"]
    assert a.last_val["val_iou"] == b.last_val["val_iou"]


def test_skip_bad_counts_broken_objects(tiny_cfg, tiny_dataset, tmp_path):
    import shutil
    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    cat = "table"
    first = (data / cat / "train.lst").read_text().split()[0]
    (data / cat / first / "points.npz").write_bytes(b"garbage")
    tiny_cfg["data"]["path"] = str(data)
    with pytest.raises(Exception, match="points.npz"):
        train(tiny_cfg, progress=False, log=lambda *a: None)
    tiny_cfg["data"]["skip_bad"] = True
    tiny_cfg["out_dir"] = str(tmp_path / "skip")
    messages = []
    result = train(tiny_cfg, progress=False, log=messages.append)
    assert result.skipped > 0
    assert any("skipped" in m for m in messages)


def test_sigkill_mid_run_then_resume(tiny_cfg, tmp_path):
    """Kill training hard while it checkpoints every iteration; the rerun resumes and finishes."""
    tiny_cfg["train"].update(max_iters=400, checkpoint_every=1, validate_every=1000)
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_cfg))
    cmd = [sys.executable, "-m", "onet", "train", str(cfg_path), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "run" / "model.pt"
    deadline = time.time() + 120
    while time.time() < deadline:
        if ckpt.is_file() and load_checkpoint(ckpt)["it"] >= 3:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(ckpt)["it"]  # never torn: written atomically
    assert 3 <= killed_at < 400
    leftovers = [p for p in ckpt.parent.iterdir() if p.name.startswith(".")]
    for p in leftovers:  # a temp file may remain from the kill, but never under the real name
        assert p.name.endswith(".tmp.pt")
    tiny_cfg["train"]["max_iters"] = killed_at + 3
    cfg_path.write_text(yaml.safe_dump(tiny_cfg))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"resuming from {ckpt} at iteration {killed_at}" in done.stdout
    assert load_checkpoint(ckpt)["it"] == killed_at + 3


def test_cli_train_and_config_error(tiny_cfg, tmp_path):
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_cfg))
    bad = subprocess.run([sys.executable, "-m", "onet", "train", str(cfg_path), "trian.max_iters=2"],
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert "'train'" in bad.stderr and "Traceback" not in bad.stderr
    ok = subprocess.run([sys.executable, "-m", "onet", "train", str(cfg_path), "train.max_iters=2",
                         f"out_dir={tmp_path / 'x'}", "--no-progress"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "x" / "model.pt").is_file() and (tmp_path / "x" / "config.yaml").is_file()


def test_selection_metric_must_be_one_the_model_measures(tiny_cfg):
    """Checked when the config is loaded (onet.config), before any data is read."""
    from onet.config import ConfigError
    with pytest.raises(ConfigError, match="model_selection_metric 'iou'.*points model.*loss, chamfer"):
        load_config(CONFIG_DIR / "baselines" / "psgn_demo.yaml", [
            f"out_dir={tiny_cfg['out_dir']}", f"data.path={tiny_cfg['data']['path']}",
            "train.model_selection_metric=iou"])


def test_max_cpu_time_stops_on_cpu_seconds(tiny_cfg):
    # the CPU budget must stop this run long before its epoch limit (no iteration or wall-clock limit)
    tiny_cfg["train"].update(max_iters=None, max_epochs=500, max_cpu_time=1.0, lr_schedule="cosine",
                             validate_every=10**6)
    cpu0 = time.process_time()
    result = train(tiny_cfg, progress=False, log=lambda *a: None)
    assert result.stop_reason == "reached train.max_cpu_time=1.0s"
    assert result.iterations >= 1
    assert 1.0 <= time.process_time() - cpu0 < 60
    # the budget spans resumes: a second call finds it spent and stops at once
    assert load_checkpoint(result.out_dir / "model.pt")["cpu_seconds"] >= 1.0
    again = train(tiny_cfg, progress=False, log=lambda *a: None)
    assert again.iterations == result.iterations and "max_cpu_time" in again.stop_reason


def test_cosine_decays_over_the_cpu_budget():
    from onet.training.trainer import learning_rate

    t = {"lr_schedule": "cosine", "lr": 1.0, "max_iters": None, "max_cpu_time": 100.0}
    assert [learning_rate(t, 5, s) for s in (0.0, 50.0, 100.0, 150.0)] == pytest.approx([1.0, 0.5, 0.0, 0.0])
    # both horizons: the one nearer its end sets the progress
    t["max_iters"] = 10
    assert learning_rate(t, 5, 10.0) == pytest.approx(0.5)
    assert learning_rate(t, 1, 50.0) == pytest.approx(0.5)
    assert learning_rate({**t, "max_cpu_time": None}, 5, 1e9) == pytest.approx(0.5)


def test_cosine_needs_a_horizon(tiny_cfg):
    from onet.utils.errors import ConfigError

    tiny_cfg["train"].update(max_iters=None, max_epochs=1, lr_schedule="cosine")
    with pytest.raises(ConfigError, match="max_cpu_time"):
        train(tiny_cfg, progress=False, log=lambda *a: None)


def test_chunked_validation_equals_unchunked(tiny_cfg):
    """Decoding the validation points in chunks (train.val_points_chunk) changes memory, not numbers."""
    from onet.data.dataset import collate
    from onet.models import build_model
    from onet.training.trainer import make_datasets, validate

    torch.manual_seed(0)
    model = build_model(tiny_cfg["model"])
    model.train()
    _, val_ds = make_datasets(tiny_cfg)
    loader = torch.utils.data.DataLoader(val_ds, batch_size=3, collate_fn=collate)
    whole = validate(model, loader, torch.device("cpu"), 0.2)
    chunked = validate(model, loader, torch.device("cpu"), 0.2, points_chunk=7)  # 2 points per object per call
    assert model.training  # validate puts the model back into training mode
    assert chunked["val_loss"] == pytest.approx(whole["val_loss"], rel=1e-6)
    assert chunked["val_iou"] == pytest.approx(whole["val_iou"], abs=1e-12)
    assert 0.0 <= whole["val_iou"] <= 1.0 and whole["val_skipped"] == 0


def test_weight_average_follows_its_formula():
    from onet.gan import ema_update, make_ema
    from onet.training.trainer import ema_decay_at
    net = torch.nn.Linear(3, 2)
    avg = make_ema(net)
    expected = [p.detach().clone() for p in net.parameters()]
    for n in range(30):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        ema_update(avg, net, ema_decay_at(0.9, n))
        d = min(0.9, (1 + n) / (10 + n))
        expected = [d * e + (1 - d) * p.detach() for e, p in zip(expected, net.parameters())]
    for e, p in zip(expected, avg.parameters()):
        torch.testing.assert_close(p, e)
    assert not any(p.requires_grad for p in avg.parameters())


def test_ema_run_validates_and_generates_with_the_average_and_resumes(tiny_cfg, tmp_path):
    from onet.models import load_model
    tiny_cfg["train"]["ema_decay"] = 0.5
    tiny_cfg["train"]["max_iters"] = 6
    straight = train({**tiny_cfg, "out_dir": str(tmp_path / "straight")}, progress=False, log=lambda *a: None)
    ckpt = load_checkpoint(straight.out_dir / "model.pt")
    assert set(ckpt["model_ema"]) == set(ckpt["model"])
    assert any(not torch.equal(ckpt["model_ema"][k], ckpt["model"][k]) for k in ckpt["model"]
               if ckpt["model"][k].is_floating_point())
    # what generate / eval load is the average
    model, _ = load_model(tiny_cfg, straight.out_dir / "model.pt", torch.device("cpu"))
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, ckpt["model_ema"][k])
    # stopped at 4 and resumed for one step: the average goes on from the saved one (update n = 4)
    tiny_cfg["train"]["max_iters"] = 4
    train(tiny_cfg, progress=False, log=lambda *a: None)
    at4 = load_checkpoint(os.path.join(tiny_cfg["out_dir"], "model.pt"))
    tiny_cfg["train"]["max_iters"] = 5
    train(tiny_cfg, progress=False, log=lambda *a: None)
    at5 = load_checkpoint(os.path.join(tiny_cfg["out_dir"], "model.pt"))
    d = min(0.5, 5 / 14)
    for k, v in at4["model_ema"].items():
        if v.is_floating_point() and k in dict(model.named_parameters()):
            torch.testing.assert_close(at5["model_ema"][k], d * v + (1 - d) * at5["model"][k])


def test_ema_decay_out_of_range_is_a_config_error(tiny_cfg):
    from onet.config import ConfigError, validate
    with pytest.raises(ConfigError, match=r"train\.ema_decay"):
        validate({**tiny_cfg, "train": {**tiny_cfg["train"], "ema_decay": 1.0}})


def test_loader_workers_live_through_the_run_and_train_as_the_main_process(tiny_cfg, tmp_path, monkeypatch):
    """train.num_workers > 0: one loader iterator over epoch after epoch (EpochStream), so each
    worker reads an object's points once however many epochs pass (data.cache_points), and the
    run computes exactly what a run without workers does."""
    import onet.data.dataset as dataset_module
    from onet.data.dataset import DataOptions, ShapeDataset

    reads = tmp_path / "reads.txt"
    real = dataset_module.OccupancySamples

    def logged(path):  # runs in the forked workers too: a file, not a list, collects the reads
        with open(reads, "a") as f:
            f.write(f"{path}\n")
        return real(path)

    monkeypatch.setattr(dataset_module, "OccupancySamples", logged)
    d = tiny_cfg["data"]
    train_items = ShapeDataset(d["path"], d["train_split"], options=DataOptions.from_config(d),
                               classes=d["classes"]).items
    n_batches = max(1, len(train_items) // tiny_cfg["train"]["batch_size"])
    tiny_cfg["train"].update(max_iters=6 * n_batches, validate_every=1000, checkpoint_every=1000)
    tiny_cfg["data"]["cache_points"] = True
    runs = {}
    for workers in (0, 2):
        tiny_cfg["train"]["num_workers"] = workers
        tiny_cfg["out_dir"] = str(tmp_path / f"w{workers}")
        reads.write_text("")
        result = train(tiny_cfg, progress=False, log=lambda *a: None)
        rows = list(csv.DictReader(open(result.out_dir / "metrics.csv")))
        runs[workers] = [(r["it"], r["epoch"], r["loss"]) for r in rows if r["loss"]]
        assert {int(r[1]) for r in runs[workers]} == set(range(6))
        lines = reads.read_text().splitlines()
        per_object = [sum(line.startswith(str(tiny_cfg["data"]["path"]) + f"/{c}/{m}/") for line in lines)
                      for c, m in train_items]
        # read once per process that loads it (the main process, or each of the 2 workers), not once an epoch
        assert 1 <= max(per_object) <= max(1, workers), (workers, per_object)
    assert runs[0] == runs[2] and len(runs[0]) == 6 * n_batches


def test_cpu_threads_a_number_is_used_for_training_and_restored_after(tiny_cfg, monkeypatch):
    import onet.training.trainer as trainer_module
    seen, forward = [], trainer_module.LossModule.forward  # the thread count each step runs on

    def counted(self, batch):
        seen.append(torch.get_num_threads())
        return forward(self, batch)

    monkeypatch.setattr(trainer_module.LossModule, "forward", counted)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        tiny_cfg["train"]["cpu_threads"] = 1
        lines = []
        train(tiny_cfg, progress=False, log=lines.append)
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2
        assert "CPU threads: 1 (train.cpu_threads)" in lines
    finally:
        torch.set_num_threads(before)


def test_cpu_threads_auto_switches_when_fewer_threads_step_faster_and_logs_it(tiny_cfg, monkeypatch):
    """The governor's wiring: step times are made to depend on the thread count (as when another
    process holds a core); its decisions are tested in tests/utils/test_threads.py."""
    import onet.utils.threads as threads_module

    class Loaded(threads_module.ThreadGovernor):
        def __init__(self, threads, **kwargs):
            super().__init__(threads, first=3, window=3, **kwargs)

        def step_done(self, seconds):
            super().step_done({1: 0.2, 2: 0.5}[torch.get_num_threads()])

    monkeypatch.setattr(threads_module, "ThreadGovernor", Loaded)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        tiny_cfg["train"].update(max_iters=12, cpu_threads="auto")
        lines = []
        train(tiny_cfg, progress=False, log=lines.append)
        assert any(line.startswith("CPU threads: 2 (train.cpu_threads=auto") for line in lines)
        assert "[it 7] 1 CPU thread instead of 2: 0.200 s per step against 0.500 " \
               "(another process may hold a core)" in lines
        assert torch.get_num_threads() == 2  # restored for what runs after training
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("value, message", [("0", "must be >= 1"), ("two", "must be an integer"),
                                             ("1.5", "must be an integer")])
def test_bad_cpu_threads_exit_2(tmp_path, value, message):
    res = subprocess.run([sys.executable, "-m", "onet", "train", "configs/demo.yaml", f"out_dir={tmp_path}",
                          f"train.cpu_threads={value}"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "train.cpu_threads" in res.stderr and message in res.stderr, res.stderr

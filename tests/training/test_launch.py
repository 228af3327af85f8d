import pytest

from onet.config import CONFIG_DIR, load_config
from onet.training.launch import processes_for, resolve_cpu_processes
from onet.utils.errors import ConfigError


@pytest.mark.parametrize("batch, cpus, expected", [
    (16, 2, 2), (16, 1, 1), (16, 8, 4),  # at most one process per 4 objects
    (16, 3, 2),                          # a divisor of the batch
    (64, 16, 16), (12, 16, 3), (2, 2, 1), (1, 64, 1),
])
def test_auto_is_one_process_per_cpu_within_the_batch(batch, cpus, expected):
    n = resolve_cpu_processes("auto", batch, cpus)
    assert n == expected and batch % n == 0


def test_an_explicit_count_must_divide_the_batch():
    assert resolve_cpu_processes(2, 16, 1) == 2  # more processes than CPUs is the user's call
    for bad in (3, 0, -1, 1.5, True, "two"):
        with pytest.raises(ConfigError, match="train.cpu_processes"):
            resolve_cpu_processes(bad, 16, 2)


def test_processes_only_on_a_cpu_and_not_under_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    cfg = load_config(CONFIG_DIR / "pointcloud_cpu.yaml", [])
    assert cfg["train"]["cpu_processes"] == "auto"
    assert processes_for(cfg, "cpu", cpus=2) == 2
    assert processes_for(cfg, "cuda", cpus=2) == 1
    assert processes_for(load_config(CONFIG_DIR / "demo.yaml", []), "cpu", cpus=2) == 1  # the default: 1
    monkeypatch.setenv("WORLD_SIZE", "2")  # a rank that torchrun started: it trains, it does not launch
    assert processes_for(cfg, "cpu", cpus=2) == 1


def test_the_key_takes_a_count_or_auto_at_load_time():
    assert load_config(CONFIG_DIR / "default.yaml", ["train.cpu_processes=4"])["train"]["cpu_processes"] == 4
    for bad in ("0", "many", "2.5"):
        with pytest.raises(ConfigError, match="train.cpu_processes"):
            load_config(CONFIG_DIR / "default.yaml", [f"train.cpu_processes={bad}"])


def test_a_failing_job_returns_the_rank_code_and_says_it_once(tmp_path, capfd):
    from onet.training.launch import launch
    lines = []
    code = launch(["train", str(tmp_path / "missing.yaml")], 2, cpus=2, log=lines.append)
    assert code == 2 and lines[0].startswith("training as 2 processes x 1 thread")
    err = capfd.readouterr().err
    assert err.count("config file not found") == 1 and "missing.yaml" in err

"""Generation beyond one process: torchrun ranks and --shard jobs write what one process writes."""

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
import yaml
from PIL import Image

from onet.cli import main
from onet.generation import generate
from onet.training import train

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _files(folder: Path, skip=()) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.relative_to(folder).parts[0] not in skip and p.name not in skip}


def _timing_names(path: Path) -> list[str]:
    with open(path, newline="") as f:
        return sorted(r["name"] for r in csv.DictReader(f))


@pytest.fixture
def trained_cfg(tiny_cfg):
    """A tiny image model trained for 2 steps; generation over the train split (more objects, several batches)."""
    tiny_cfg["train"].update(max_iters=2, validate_every=1000, checkpoint_every=1000)
    train(tiny_cfg, device="cpu", progress=False, log=lambda *a: None)
    tiny_cfg["data"]["test_split"] = "train"
    tiny_cfg["generation"]["batch_size"] = 2
    return tiny_cfg


def test_two_torchrun_processes_write_the_meshes_and_tables_of_one(trained_cfg, tmp_path):
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(trained_cfg))
    # the same thread count in both runs (one per torchrun worker), so the same float rounding
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""))
    two = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "onet"]

    def run(cmd, *args):
        done = subprocess.run([*cmd, *args, "--device", "cpu", "--no-progress"], capture_output=True, text=True,
                              timeout=300, env=env, start_new_session=True)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout

    def one(*args):  # in this process, on one thread like each torchrun worker
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            assert main([*map(str, args), "--device", "cpu", "--no-progress"]) == 0
        finally:
            torch.set_num_threads(threads)

    one("generate", cfg_path, "generation.generation_dir=gen_one")
    out = run(two, "generate", cfg_path, "generation.generation_dir=gen_two")
    assert out.count("wrote ") == 1  # rank 0 reports for both
    run_dir = Path(trained_cfg["out_dir"])
    a, b = run_dir / "gen_one", run_dir / "gen_two"
    meshes = sorted((a / "meshes").rglob("*.ply"))
    assert len(meshes) >= 4  # at least two batches of 2, so both ranks worked
    # meshes, previews and input copies: byte-identical files
    skip = ("config.yaml", "time_generation.csv")
    assert _files(a, skip) == _files(b, skip)
    # one timing table with every object, no per-rank leftovers
    assert _timing_names(a / "time_generation.csv") == _timing_names(b / "time_generation.csv")
    assert len(_timing_names(b / "time_generation.csv")) == len(meshes)
    assert not list(b.glob("*.shard*"))

    # evaluation: the same tables from one process and from two
    one("eval", cfg_path, "generation.generation_dir=gen_one", "evaluation.eval_dir=eval_one")
    out = run(two, "eval", cfg_path, "generation.generation_dir=gen_one", "evaluation.eval_dir=eval_two")
    assert out.count("tables written") == 1
    tables = _files(run_dir / "eval_one")
    assert len(tables) == 5 and tables == _files(run_dir / "eval_two", skip=("objects",))


def test_shards_then_an_unsharded_run_merge_meshes_timings_and_failures(trained_cfg, tmp_path):
    inputs = tmp_path / "photos"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(inputs / f"p{i}.png")
    (inputs / "p2.png").write_bytes(b"not a png")  # fails in whichever shard gets it
    trained_cfg["generation"]["batch_size"] = 1
    quiet = dict(device="cpu", input_dir=inputs, progress=False, log=lambda *a: None)

    single = generate(trained_cfg, output_dir=tmp_path / "one", **quiet)
    assert sorted(single.written) == ["p0", "p1", "p3", "p4"] and [f[0] for f in single.failures] == ["p2"]

    out = tmp_path / "sharded"
    parts = [generate(trained_cfg, output_dir=out, shard=(i, 2), **quiet) for i in range(2)]
    assert sorted(parts[0].written + parts[1].written) == sorted(single.written)
    assert not set(parts[0].written) & set(parts[1].written)
    assert not (out / "time_generation.csv").exists()
    assert sorted(p.name for p in out.glob("*.shard*")) == sorted(
        ["time_generation.shard0of2.csv", "time_generation.shard1of2.csv",
         f"failures.shard{[i for i in range(2) if parts[i].failures][0]}of2.csv"])

    final = generate(trained_cfg, output_dir=out, **quiet)
    assert final.written == [] and sorted(final.existing) == sorted(single.written)
    assert _timing_names(out / "time_generation.csv") == sorted(single.written)
    assert (out / "failures.csv").read_text() == (tmp_path / "one" / "failures.csv").read_text()
    assert not list(out.glob("*.shard*"))
    skip = ("config.yaml", "time_generation.csv")
    assert _files(out, skip) == _files(tmp_path / "one", skip)


def test_marching_cubes_workers_write_the_meshes_of_one_process(trained_cfg, tmp_path):
    """generation.marching_cubes_workers (the CUDA default, forced here on the CPU): the same files."""
    quiet = dict(device="cpu", progress=False, log=lambda *a: None)
    serial = generate(trained_cfg, output_dir=tmp_path / "serial", **quiet)
    trained_cfg["generation"]["marching_cubes_workers"] = 2
    overlapped = generate(trained_cfg, output_dir=tmp_path / "workers", **quiet)
    assert overlapped.written == serial.written and len(serial.written) >= 4
    skip = ("config.yaml", "time_generation.csv")
    assert _files(tmp_path / "workers", skip) == _files(tmp_path / "serial", skip)


def test_torch_marching_cubes_writes_the_same_vertices(trained_cfg, tmp_path):
    """generation.marching_cubes=torch (auto's choice on CUDA, here on the CPU); auto on the CPU
    is recorded as skimage in the folder's config."""
    from scipy.spatial import cKDTree

    quiet = dict(device="cpu", progress=False, log=lambda *a: None)
    trained_cfg["generation"]["marching_cubes"] = "auto"
    ref = generate(trained_cfg, output_dir=tmp_path / "auto", **quiet)
    assert yaml.safe_load((tmp_path / "auto" / "config.yaml").read_text())["generation"]["marching_cubes"] == "skimage"
    trained_cfg["generation"]["marching_cubes"] = "torch"
    torch_run = generate(trained_cfg, output_dir=tmp_path / "torch", **quiet)
    assert torch_run.written == ref.written and len(ref.written) >= 4
    assert yaml.safe_load((tmp_path / "torch" / "config.yaml").read_text())["generation"]["marching_cubes"] == "torch"
    for name in ref.written:
        a = trimesh.load(tmp_path / "auto" / "meshes" / f"{name}.ply", process=False)
        b = trimesh.load(tmp_path / "torch" / "meshes" / f"{name}.ply", process=False)
        assert a.vertices.shape == b.vertices.shape and b.is_watertight
        assert cKDTree(b.vertices).query(a.vertices)[0].max() < 1e-5


def test_a_failure_inside_the_worker_pipeline_skips_only_its_object(trained_cfg, tmp_path, monkeypatch):
    """An object that breaks in the overlapped pipeline is named; its batch-mate and later batches still
    get their meshes (the batches in flight are redone one object at a time)."""
    import onet.generation.run as run

    real = run._encode_field_batch
    names = sorted(generate(trained_cfg, output_dir=tmp_path / "ref", device="cpu", progress=False,
                            log=lambda *a: None).written)
    bad = names[1]  # second object of the first batch (batch_size 2)

    def breaks_on_bad(model, batch, cfg, dev, governor=None):
        if any(job.name == bad for job in batch):
            raise ValueError(f"cannot encode {bad}")
        return real(model, batch, cfg, dev, governor)

    monkeypatch.setattr(run, "_encode_field_batch", breaks_on_bad)
    trained_cfg["generation"]["marching_cubes_workers"] = 1
    result = generate(trained_cfg, output_dir=tmp_path / "out", device="cpu", progress=False, log=lambda *a: None)
    assert [f[0] for f in result.failures] == [bad] and "cannot encode" in result.failures[0][1]
    assert sorted(result.written) == [n for n in names if n != bad]
    assert (tmp_path / "out" / "failures.csv").is_file()


def test_cpu_threads_auto_switches_on_the_network_calls_and_logs_it(trained_cfg, tmp_path, monkeypatch):
    """generation.cpu_threads=auto: MISE's full-size network calls are the governor's steps (their
    seconds per point made to depend on the thread count here, as when another process holds a
    core; the decisions are tested in tests/utils/test_threads.py); same meshes either way."""
    import onet.utils.threads as threads_module
    calls = []

    class Loaded(threads_module.ThreadGovernor):
        def __init__(self, threads, **kwargs):
            super().__init__(threads, first=3, window=3, **kwargs)

        def step_done(self, seconds):
            calls.append(seconds)
            super().step_done({1: 2e-6, 2: 5e-6}[torch.get_num_threads()])

    quiet = dict(device="cpu", progress=False, log=lambda *a: None)
    trained_cfg["generation"]["points_chunk"] = 256  # several full-size calls per batch of this tiny grid
    trained_cfg["generation"]["cpu_threads"] = 2
    fixed = generate(trained_cfg, output_dir=tmp_path / "fixed", **quiet)
    monkeypatch.setattr(threads_module, "ThreadGovernor", Loaded)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        trained_cfg["generation"]["cpu_threads"] = "auto"
        lines = []
        auto = generate(trained_cfg, output_dir=tmp_path / "auto", device="cpu", progress=False, log=lines.append)
        assert torch.get_num_threads() == 2  # restored after generation
    finally:
        torch.set_num_threads(before)
    assert len(calls) >= 8 and all(0 < s < 1 for s in calls)  # seconds per point of real calls
    assert "1 CPU thread instead of 2: 2.000 ms per 1000 points against 5.000 (another process may hold a core)" \
        in lines
    assert auto.written == fixed.written and len(fixed.written) >= 4
    # one thread or two: byte-identical meshes (each point's logit is its own row of the products),
    # which is why auto can be generation's default
    assert _files(tmp_path / "auto" / "meshes") == _files(tmp_path / "fixed" / "meshes")

"""Distributed data parallel on CPU: 2 gloo processes launched with torchrun train like 1 process."""

import csv
import os
import signal
import socket
import subprocess
import sys

import pytest
import torch
import yaml

from onet.training import train
from onet.utils.checkpoints import load_checkpoint
from onet.training.distributed import EpochStream, GlobalBatchSampler


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(out_dir) -> dict[int, float]:
    with open(out_dir / "metrics.csv", newline="") as f:
        return {int(r["it"]): float(r["loss"]) for r in csv.DictReader(f) if r["loss"]}


def test_global_batch_sampler_splits_the_same_global_batches():
    one = list(GlobalBatchSampler(10, 4, seed=3))
    ranks = [list(GlobalBatchSampler(10, 4, rank=r, world_size=2, seed=3)) for r in range(2)]
    for i, batch in enumerate(one):
        assert sorted(ranks[0][i] + ranks[1][i]) == sorted(batch)
    with pytest.raises(ValueError, match="divisible"):
        GlobalBatchSampler(10, 5, world_size=2)


def test_epoch_stream_chains_the_epochs_from_where_a_run_resumes():
    import itertools

    sampler = GlobalBatchSampler(10, 4, seed=3)  # 2 batches an epoch
    stream = EpochStream(sampler)
    stream.start_at(epoch=3, start_batch=1)
    got = list(itertools.islice(stream, 5))
    want = [(3, b) for b in list(sampler.epoch_batches(3))[1:]] + \
        [(e, b) for e in (4, 5) for b in sampler.epoch_batches(e)]
    assert got == [[(i, e) for i in b] for e, b in want]
    assert list(sampler.epoch_batches(4)) != list(sampler.epoch_batches(5))  # a new order each epoch
    assert list(sampler) == list(sampler.epoch_batches(0))


def _torchrun(cfg: dict, tmp_path, nproc: int = 2) -> subprocess.CompletedProcess:
    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr",
           "127.0.0.1", "--master_port", str(_free_port()), "-m", "onet", "train", str(cfg_path), "--device", "cpu",
           "--no-progress"]
    # own process group, so a hung run's workers are killed with torchrun, never left behind
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail("torchrun did not finish in 300 s (a collective without a partner hangs):\n" + err[-3000:])
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def test_all_ranks_skip_a_batch_one_rank_could_not_load(tiny_cfg, tiny_dataset, tmp_path):
    """2 gloo processes, 1 object each per step, one training object broken (data.skip_bad=true).

    The rank that draws it has an empty batch. Unless both ranks agree to skip that step,
    that rank runs one step fewer per epoch than the other, whose extra gradient all-reduce
    then has no partner: the run hangs (here: the subprocess times out).
    """
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_dataset, data)
    first = (data / "mug" / "train.lst").read_text().split()[0]
    (data / "mug" / first / "points.npz").write_bytes(b"garbage")
    n_train = sum(len((data / c / "train.lst").read_text().split()) for c in ("mug", "table"))
    tiny_cfg["data"].update(path=str(data), skip_bad=True)
    tiny_cfg["train"].update(max_iters=None, max_epochs=1, lr_schedule="constant", batch_size=2, print_every=1, validate_every=1,
                             checkpoint_every=1000)
    tiny_cfg["out_dir"] = str(tmp_path / "run")
    done = _torchrun(tiny_cfg, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "run" / "model.pt")
    assert ckpt["skipped"] == 1 and ckpt["epoch"] == 1  # one epoch: drawn once, by one rank
    assert ckpt["it"] == n_train // 2 - 1  # every bad load cost one whole global step
    assert f"mug/{first}" in done.stdout + done.stderr  # named once, by rank 0
    # each rank saved its own random streams (seeded seed + rank), not rank 0's twice
    assert len(ckpt["rng"]) == 2 and not torch.equal(ckpt["rng"][0]["torch"], ckpt["rng"][1]["torch"])
    assert sorted(_losses(tmp_path / "run")) == list(range(1, ckpt["it"] + 1))


def test_two_process_gloo_ddp_tracks_one_process(tiny_cfg, tmp_path):
    """Same global batch (4 = 2 x 2): the per-iteration losses agree to float rounding.

    This needs synchronised batch norm: the ResNet's BatchNorm2d and the decoder's
    conditional batch norm normalise with statistics over the global batch in both
    runs. With per-process statistics the losses differ by 2e-4 (relative) at the first
    step and 1e-3 by the fourth, so the tolerance below catches unsynchronised statistics.
    """
    tiny_cfg["train"].update(max_iters=5, batch_size=4, print_every=1, validate_every=1000, checkpoint_every=1000)
    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    tiny_cfg["out_dir"] = str(one_dir)
    single = train(tiny_cfg, device="cpu", progress=False, log=lambda *a: None)

    tiny_cfg["out_dir"] = str(two_dir)
    done = _torchrun(tiny_cfg, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    one, two = _losses(one_dir), _losses(two_dir)
    assert sorted(one) == sorted(two) == [1, 2, 3, 4, 5]
    for it in one:
        assert two[it] == pytest.approx(one[it], rel=1e-4), (it, one, two)
    # rank 0 checkpointed and validated the same model: parameters are not compared one by one,
    # since biases in front of a batch norm get zero gradient and Adam turns its rounding noise into steps
    a, b = load_checkpoint(one_dir / "model.pt"), load_checkpoint(two_dir / "model.pt")
    assert a["it"] == b["it"] == 5 and a["model"].keys() == b["model"].keys()
    assert b["best_metric"] == pytest.approx(single.best_metric, abs=1e-3)


_AGREE_SCRIPT = r'''
import os, sys, warnings
import torch, torch.distributed as dist
import torch.multiprocessing as mp
from onet.training.distributed import NONFINITE_STOP, DistInfo, GlooSyncBatchNorm, agree_to_stop

def run(rank, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    info, cpu = DistInfo(rank, 2, rank), torch.device("cpu")
    # train.max_time on each rank's clock: rank 1 thinks time is up, rank 0 not -> both go on
    a = agree_to_stop("reached train.max_time=1s" if rank == 1 else "", info, cpu)
    # rank 0 thinks time is up -> both stop, with rank 0's reason
    b = agree_to_stop("reached train.max_time=1s" if rank == 0 else "", info, cpu)
    # a NaN loss on rank 1 only -> both stop
    c = agree_to_stop("", info, cpu, nonfinite=torch.tensor(rank == 1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bn = GlooSyncBatchNorm(3).train()
        xs = [torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(r)) for r in range(2)]
        w = torch.randn(8, 3, 5, generator=torch.Generator().manual_seed(9))  # a loss that is not symmetric
        x = xs[rank].clone().requires_grad_()
        (bn(x) * w[4 * rank:4 * rank + 4]).sum().backward()
    # the same global batch through plain batch norm in one process: outputs' gradients must match
    whole = torch.cat(xs).requires_grad_()
    (torch.nn.BatchNorm1d(3).train()(whole) * w).sum().backward()
    grad_ok = torch.allclose(x.grad, whole.grad[4 * rank:4 * rank + 4], atol=1e-5)
    with open(f"{sys.argv[2]}/rank{rank}.txt", "w") as f:  # one file each: prints would interleave
        f.write(f"{repr(a)} {repr(b)} {c == NONFINITE_STOP} {[str(w.message)[:80] for w in caught]} {grad_ok}")
    dist.destroy_process_group()

if __name__ == "__main__":
    mp.spawn(run, args=(int(sys.argv[1]),), nprocs=2)
'''


def test_ranks_follow_rank_0s_stop_decision_and_sync_bn_does_not_warn(tmp_path):
    script = tmp_path / "agree.py"
    script.write_text(_AGREE_SCRIPT)
    env = {**{k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")},
           "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, str(script), str(_free_port()), str(tmp_path)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in (0, 1):  # both go on; both stop with rank 0's reason; both stop on rank 1's NaN; no warning;
        # gradients of the synchronised batch norm flow across processes like one process's
        assert (tmp_path / f"rank{rank}.txt").read_text() == "'' 'reached train.max_time=1s' True [] True"


_ONCE_PER_NODE = """
import sys, time
from pathlib import Path
from onet.training.distributed import init_distributed, once_per_node, shutdown_distributed

info = init_distributed("cpu")
folder, log = Path(sys.argv[1]), Path(sys.argv[2])

def build():  # idempotent, like ensure_builtin_dataset: returns at once when the folder is complete
    if (folder / "done").is_file():
        return
    with open(log, "a") as f:
        f.write(f"start {info.rank}\\n")
    time.sleep(0.5)  # long enough that a concurrent build by the other node would interleave
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "done").write_text(str(info.rank))
    with open(log, "a") as f:
        f.write(f"end {info.rank}\\n")

once_per_node(build, info)
assert (folder / "done").is_file(), f"rank {info.rank}: {folder} was not built"
shutdown_distributed(info)
"""


@pytest.mark.parametrize("shared_fs", [False, True])
def test_dataset_is_built_once_per_node(tmp_path, shared_fs):
    """Two nodes of one process each (both LOCAL_RANK 0), gloo: without a shared file system
    each node builds its own copy, one node after the other; with one, the second finds it."""
    port, log = _free_port(), tmp_path / "log.txt"
    folders = [tmp_path / "shared"] * 2 if shared_fs else [tmp_path / f"node{r}" for r in range(2)]
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-c", _ONCE_PER_NODE, str(folders[rank]), str(log)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      start_new_session=True))
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            for p in procs:
                os.killpg(p.pid, signal.SIGKILL)
            pytest.fail("once_per_node did not finish in 120 s")
        assert proc.returncode == 0, err[-3000:]
    events = log.read_text().split("\n")[:-1]
    if shared_fs:
        assert events == ["start 0", "end 0"]
    else:
        assert events == ["start 0", "end 0", "start 1", "end 1"]
        assert all((f / "done").is_file() for f in folders)


def test_cpu_budget_is_shared_by_the_processes(tiny_cfg, tmp_path):
    """train.max_cpu_time under torchrun: the processes' CPU seconds are summed, so 2 processes
    of 1 thread stop where 1 process of 2 threads would, and both at the same iteration."""
    budget = 4.0
    tiny_cfg["train"].update(max_iters=None, max_epochs=10**4, max_cpu_time=budget, lr_schedule="cosine",
                             batch_size=4, print_every=1, validate_every=10**6, checkpoint_every=10**6)
    tiny_cfg["out_dir"] = str(tmp_path / "run")
    done = _torchrun(tiny_cfg, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "reached train.max_cpu_time=4.0s" in done.stdout + done.stderr
    ckpt = load_checkpoint(tmp_path / "run" / "model.pt")
    # recorded: the sum at the stop, at most a step past the budget
    assert budget <= ckpt["cpu_seconds"] < budget + 2
    own = ckpt["cpu_seconds_per_process"]
    # the sum is of both processes (measured again at the final checkpoint, a validation later);
    # each counting only its own time would have run until each alone reached the budget
    assert len(own) == 2 and sum(own) >= budget
    assert max(own) < budget, own
    assert sorted(_losses(tmp_path / "run")) == list(range(1, ckpt["it"] + 1))

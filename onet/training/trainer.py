"""`onet train`: the training loop, top to bottom.

Build data, model and optimizer; resume from out_dir/model.pt when present;
loop over global batches; log, validate and checkpoint visibly in the loop;
stop on max_iters / max_epochs / max_time / max_cpu_time (the time limits not before min_iters) and
leave a resumable checkpoint.

Guarantees (issue 12):
- Exact resume: a checkpoint holds the RNG states and the position inside the
  epoch (`batch_in_epoch`), and the data loaders draw from their own
  generators, so a resumed CPU run is bit-identical to an uninterrupted one.
- A non-finite training loss stops the run with an error naming the iteration;
  no checkpoint with non-finite parameters is ever written; a non-finite
  validation metric stops the run and is never "best".
- model_best.pt is the best validated checkpoint, or with train.model_selection_tolerance
  the latest one within that of the best; it survives any kill: an iteration validates before it writes
  model.pt, and a resume takes the best metric recorded in model_best.pt.
- Ranks agree when to stop: rank 0 decides (its clock for train.max_time) and
  every rank follows, and a non-finite loss on any rank stops all of them.

On several processes (issue 19): a batch skipped on one rank is skipped by all
(`agree`), every rank validates its share of the objects in chunks of points,
checkpoints hold each rank's own RNG state (restored for the ranks that exist
on resume), and the built-in dataset is built once per node.
"""

from __future__ import annotations

import csv
import hashlib
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from onet.config import ConfigError, save_config
from onet.gan import ema_update, make_ema
from onet.data.dataset import DataOptions, ShapeDataset, collate, ensure_builtin_dataset, unit_images
from onet.models import build_model, count_parameters, data_targets, fused
from onet.utils.checkpoints import load_checkpoint, rank_rng_state, rng_state, save_checkpoint, set_rng_state
from onet.training.compiled import LossModule, TrainingStep, resolve_compile
from onet.training.distributed import (
    DistInfo,
    EpochStream,
    GlobalBatchSampler,
    NONFINITE_STOP,
    agree,
    agree_to_stop,
    all_gather_objects,
    all_reduce_mean,
    all_reduce_sum,
    convert_sync_batchnorm,
    init_distributed,
    once_per_node,
    shutdown_distributed,
)
from onet.utils.device import (keep_freed_memory, loader_settings, release_freed_memory, resolve_device, set_tf32,
                               to_device)
from onet.utils.precision import resolve_precision
from onet.utils.threads import describe_change, thread_governor
from onet.utils.io import atomic_path

LOG_FIELDS = ["it", "epoch", "time", "loss", "val_loss", "val_iou", "val_chamfer", "skipped"]


@dataclass
class TrainResult:
    out_dir: Path
    iterations: int
    epochs: int
    best_metric: float | None
    last_val: dict | None
    skipped: int
    stop_reason: str


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def learning_rate(tcfg: dict, it: int, cpu_seconds: float = 0.0) -> float:
    """The configured schedule at iteration `it`, after `cpu_seconds` of training CPU time.

    Cosine decays over train.max_iters and/or train.max_cpu_time: with both set, whichever is
    nearer its end sets the progress, so the decay reaches 0 when the run stops.
    """
    if tcfg["lr_schedule"] == "cosine":
        progress = 0.0
        if tcfg["max_iters"] is not None:
            progress = it / tcfg["max_iters"]
        if tcfg.get("max_cpu_time") is not None:
            progress = max(progress, cpu_seconds / tcfg["max_cpu_time"])
        return 0.5 * tcfg["lr"] * (1 + math.cos(math.pi * min(progress, 1.0)))
    return tcfg["lr"]


def make_datasets(cfg: dict) -> tuple[ShapeDataset, ShapeDataset]:
    data = cfg["data"]
    # images travel from the loader workers as bytes and become floats on the device (unit_images)
    options = DataOptions.from_config(data, targets=data_targets(cfg["model"]), image_bytes=True)
    train_ds = ShapeDataset(data["path"], data["train_split"], options=options, classes=data["classes"],
                            mode="train", seed=cfg["seed"])
    val_ds = ShapeDataset(data["path"], data["val_split"], options=options, classes=data["classes"],
                          mode="val", seed=cfg["seed"])
    for name, ds in (("train", train_ds), ("val", val_ds)):
        if len(ds) == 0:
            raise RuntimeError(f"{data['path']}: the {name} split is empty")
    return train_ds, val_ds


class NonFiniteError(RuntimeError):
    """Training produced a NaN/inf loss, parameter or validation metric; the message says where."""


def ema_decay_at(decay: float, n: int) -> float:
    """train.ema_decay's decay at update n: min(decay, (1 + n) / (10 + n)), so the average of the
    weights forgets the random initialisation within the first few dozen steps."""
    return min(decay, (1 + n) / (10 + n))


def _finite_state(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point())


@torch.no_grad()
def validate(model: nn.Module, loader, device: torch.device, threshold: float, *,
             points_chunk: int | None = None, encode_points: int | None = None,
             dist_info: DistInfo = DistInfo()) -> dict:
    """Means over val objects of the model's validation metrics ("val_" + each of model.val_metrics:
    loss and IoU at probability `threshold`, or loss and Chamfer-L1 for point sets).

    points_chunk: at most this many points (over the batch) per decoder call (see the
        model's validation_metrics); chunking changes only memory, not the values.
    encode_points: a VAE encodes each object from this many of its points (data.points_subsample,
        as in training) and is scored through the posterior mean.
    dist_info: with several processes each validates its share of the objects (its
        loader's) and the sums are all-reduced, so every rank returns the same numbers.
    """
    model.eval()
    sums = {name: 0.0 for name in model.val_metrics}
    count, skipped = 0, 0
    for batch in loader:
        skipped += len(batch["skipped"])
        if "points" not in batch:
            continue
        batch = unit_images(to_device(batch, device))
        per_object = model.validation_metrics(batch, threshold, points_chunk=points_chunk, encode_points=encode_points)
        for name, values in per_object.items():
            sums[name] += float(values.double().sum())
        count += batch["points"].shape[0]
    model.train()
    names = list(sums)
    *totals, count, skipped = all_reduce_sum([*(sums[n] for n in names), count, skipped], dist_info, device)
    if not count:
        raise RuntimeError("validation split produced no loadable objects")
    return {**{f"val_{n}": t / count for n, t in zip(names, totals)}, "val_skipped": int(skipped)}


class MetricsLog:
    """metrics.csv in out_dir; on resume, rows past the checkpoint (or a torn last line) are dropped.

    `fields` are the columns (the trainer's by default; the latent GAN logs its own).
    """

    def __init__(self, path: Path, resume_it: int, fields: list[str] = LOG_FIELDS):
        self.path, self.fields = path, fields
        rows = []
        if path.is_file() and resume_it > 0:
            with open(path, newline="") as f:
                for row in csv.DictReader(f):
                    try:
                        if int(row["it"]) <= resume_it and None not in row.values():
                            rows.append(row)
                    except (KeyError, TypeError, ValueError):
                        break
        with atomic_path(path) as tmp:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fields, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)
        self.file = open(path, "a", newline="")
        self.writer = csv.DictWriter(self.file, fields)

    def write(self, **row) -> None:
        self.writer.writerow({k: row.get(k, "") for k in self.fields})
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class IterationClock:
    """The pace of training, measured on the run itself: seconds per iteration (loading and step;
    validations and checkpoints excluded) over `window` iterations after `skip` warm-up ones (the
    first epoch's cold reads, the allocator's first steps), in wall time and in this process's CPU
    time (`cpu_per_it`, what train.max_cpu_time counts). Costs nothing: no extra steps are timed.
    """

    def __init__(self, start_it: int, *, skip: int = 15, window: int = 20):
        self.first, self.last = start_it + skip, start_it + skip + window
        self.seconds = self.cpu_seconds = 0.0
        self.cpu_per_it: float | None = None
        self.restart()

    def tick(self, it: int) -> float | None:
        """Called after iteration `it`'s step; returns the wall pace once, at the window's end."""
        now, cpu = time.perf_counter(), time.process_time()
        if self.first < it <= self.last:
            self.seconds += now - self.mark
            self.cpu_seconds += cpu - self.cpu_mark
        self.mark, self.cpu_mark = now, cpu
        if it != self.last:
            return None
        self.cpu_per_it = self.cpu_seconds / (self.last - self.first)
        return self.seconds / (self.last - self.first)

    def restart(self) -> None:
        """After work that is not an iteration (a validation, a checkpoint): not counted."""
        self.mark, self.cpu_mark = time.perf_counter(), time.process_time()


def pace_message(it: int, per_it: float, tcfg: dict, *, cpu_per_it: float | None = None,
                 cpu_left: float | None = None, time_left: float | None = None) -> str:
    """What the run's measured pace means for its end: the time an iteration count takes, or the
    iterations a time or CPU budget leaves room for (`cpu_per_it`: all processes' CPU seconds)."""
    text = f"[it {it}] {per_it:.3f} s per iteration"
    max_iters, every = tcfg["max_iters"], tcfg["validate_every"]
    budgets = []  # (iterations left, what limits them)
    if cpu_left is not None and cpu_per_it:
        budgets.append((max(cpu_left, 0.0) / cpu_per_it, f"train.max_cpu_time leaves {cpu_left:.0f} CPU s"))
    if time_left is not None:
        budgets.append((max(time_left, 0.0) / per_it, f"train.max_time leaves {time_left:.0f} s"))
    if max_iters is not None and it < max_iters:
        # validations still to come: the grid's, and the last model's when the run ends off the grid
        n_val = max_iters // every - it // every + int(max_iters % every != 0)
        text = (f"{text}: the remaining {max_iters - it} iterations take about {(max_iters - it) * per_it / 60:.1f} "
                "min" + (f", plus {n_val} validation{'s' if n_val != 1 else ''}" if n_val else ""))
        short = [(n, what) for n, what in budgets if it + n < max_iters]
        if short:  # a time limit comes first: where it stops the run (validations spend it too)
            n, what = min(short)
            floor = tcfg.get("min_iters") or 0
            stop = max(it + int(n), floor)
            text += (f"; {what}, so it stops near iteration {stop:,}"
                     + (" (train.min_iters)" if stop == floor else ""))
        return text
    if max_iters is not None or not budgets:
        return text
    n, what = min(budgets)
    cpu = f" ({cpu_per_it:.3f} CPU s)" if cpu_per_it is not None else ""
    return (f"{text}{cpu}: {what}, about {n:,.0f} more iterations in {n * per_it / 60:.1f} min "
            "(fewer: validations spend the budget too)")


def _tensorboard(out_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception:  # tensorboard is an optional extra
        return None
    return SummaryWriter(str(out_dir / "logs"))


def make_optimizer(model: torch.nn.Module, lr: float, dev: torch.device) -> torch.optim.Adam:
    """Training's Adam, fused: one kernel over all parameters, not a loop of small ops per
    tensor (CPU: pointcloud_cpu's 85 tensors 1.8 ms a step instead of 8.0, 1 thread, Zen 1; the
    demo's 130 4.3 ms instead of 14.7, 2 threads, Zen 3). On CUDA too (torch's fastest Adam there;
    its step counters live on the GPU and are updated by the same kernel, so no synchronisation)."""
    return torch.optim.Adam(model.parameters(), lr=lr, fused=dev.type in ("cpu", "cuda"))


def train(cfg: dict, *, device: str | None = None, progress: bool = True, log=print) -> TrainResult:
    """Train the model described by `cfg` into cfg['out_dir'], resuming from model.pt when present."""
    tcfg = cfg["train"]
    dev = resolve_device(device or cfg["device"])
    dist_info: DistInfo = init_distributed(dev.type)
    if dev.type == "cuda" and dist_info.enabled:
        dev = torch.device("cuda", dist_info.local_rank)
    set_tf32(dev, cfg["tf32"])
    if dev.type == "cpu":
        # the step's large activations are freed and allocated again every step: keep them mapped
        keep_freed_memory()
    else:
        # every step convolves tensors of the same shapes: cuDNN times its algorithms once and
        # keeps the fastest (GPU training is not bit-reproducible in any case)
        torch.backends.cudnn.benchmark = True
    threads = torch.get_num_threads()
    try:
        return _train(cfg, tcfg, dev, dist_info, progress, log)
    finally:
        torch.set_num_threads(threads)  # train.cpu_threads is for training only
        shutdown_distributed(dist_info)


def training_loader(train_ds: ShapeDataset, sampler: GlobalBatchSampler, workers: int, pin: bool,
                    seed: int) -> tuple[EpochStream, torch.utils.data.DataLoader]:
    """The training DataLoader over epoch after epoch of `sampler` (EpochStream: one loader
    iterator serves the whole run, so its workers and their caches live as long as the run).

    Its own generator: starting a loader iteration must not draw from the global torch RNG,
    whose state a checkpoint restores (the loader's draws only seed workers; items are seeded
    per object and epoch). Set the start with stream.start_at before iterating.
    """
    stream = EpochStream(sampler)
    loader = torch.utils.data.DataLoader(train_ds, batch_sampler=stream, collate_fn=collate, num_workers=workers,
                                         pin_memory=pin, generator=torch.Generator().manual_seed(seed))
    return stream, loader


def _train(cfg: dict, tcfg: dict, dev: torch.device, dist_info: DistInfo, progress: bool, log) -> TrainResult:
    out_dir = Path(cfg["out_dir"])
    main = dist_info.is_main
    seed_everything(cfg["seed"] + dist_info.rank)
    # train.precision auto -> what this device runs; config.yaml records the resolved value
    precision, why = resolve_precision(tcfg["precision"], dev, key="train.precision")
    compile_step, compile_why = resolve_compile(tcfg["compile"], dev)  # recorded resolved too
    cfg = {**cfg, "train": {**tcfg, "precision": precision, "compile": compile_step}}
    tcfg = cfg["train"]
    if main:
        log(f"training precision: {precision} ({why})")
        if dev.type == "cpu":
            log(f"decoder elementwise passes on the CPU: {fused.describe_kernels()}")
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
    governor = thread_governor(tcfg["cpu_threads"], dev, key="train.cpu_threads", distributed=dist_info.enabled,
                               log=log if main else None,
                               on_change=lambda change: log(f"[it {it}] {describe_change(change)}"))

    # --- data
    # built once per node (not only by rank 0), so nodes without a shared file system get it too
    once_per_node(lambda: ensure_builtin_dataset(cfg["data"]["path"], seed=cfg["seed"], progress=progress,
                                                 log=log), dist_info)
    train_ds, val_ds = make_datasets(cfg)
    # which objects the weights have seen: a resume on other lists is refused (below)
    listed = "\n".join(f"{cat}/{model_id}" for cat, model_id in sorted(train_ds.items)).encode()
    train_split = {"objects": len(train_ds.items), "digest": hashlib.sha256(listed).hexdigest()[:16]}
    for name, ds in (("train", train_ds), ("val", val_ds)):
        if main and ds.problems:  # data.skip_bad=true: say what was left out, never silently
            log(f"skipped {len(ds.problems)} {name} objects listed without a folder (data.skip_bad=true); "
                f"first: {ds.problems[0]}")
    ratio = cfg["data"]["points_near_surface_ratio"]
    missing = train_ds.count_missing_near_surface() if main and ratio > 0 else 0
    if missing:  # optional file (DESIGN §10): say which objects fall back to uniform points
        log(f"data.points_near_surface_ratio={ratio}, but {missing} of {len(train_ds)} training objects have no "
            f"{cfg['data']['points_near_surface_file']}: they train on uniform points only "
            "(write it with `onet preprocess --near-surface N`)")
    sampler = GlobalBatchSampler(len(train_ds), tcfg["batch_size"], rank=dist_info.rank,
                                 world_size=dist_info.world_size, seed=cfg["seed"])
    workers, pin = loader_settings(dev, tcfg["num_workers"], tcfg["pin_memory"],
                                   processes_per_node=dist_info.local_world_size)
    stream, train_loader = training_loader(train_ds, sampler, workers, pin, cfg["seed"])
    # every rank validates its share of the objects (sums are all-reduced in validate)
    val_loader = torch.utils.data.DataLoader(val_ds, batch_size=tcfg["val_batch_size"], collate_fn=collate,
                                             sampler=range(dist_info.rank, len(val_ds), dist_info.world_size),
                                             num_workers=workers, pin_memory=pin,
                                             generator=torch.Generator().manual_seed(cfg["seed"]))

    # --- model and optimizer
    if tcfg["lr_schedule"] == "cosine" and tcfg["max_iters"] is None and tcfg.get("max_cpu_time") is None:
        raise ConfigError("train.lr_schedule=cosine needs train.max_iters or train.max_cpu_time "
                          "(the horizon of the decay)")
    ckpt_path, best_path = out_dir / "model.pt", out_dir / "model_best.pt"
    # a resumed model gets every weight from model.pt: pretrained weights are never fetched for it
    model = build_model(cfg["model"], pretrained=not ckpt_path.is_file()).to(dev)
    if tcfg["model_selection_metric"] not in model.val_metrics:  # also checked at load (onet.config)
        raise ConfigError(f"train.model_selection_metric {tcfg['model_selection_metric']!r} is not measured for a "
                          f"{model.output_kind} model; choose one of {', '.join(model.val_metrics)}")
    if main:
        log(f"model: {type(model).__name__} ({model.output_kind}), {count_parameters(model):,} trainable parameters")
    optimizer = make_optimizer(model, tcfg["lr"], dev)
    it, epoch, batch_in_epoch, best, skipped_total = 0, 0, 0, None, 0
    cpu_before = 0.0  # training CPU seconds of earlier invocations (train.max_cpu_time spans resumes)
    skipped_names: set[str] = set()
    resume = None
    if ckpt_path.is_file():
        # on the CPU: the optimizer's load_state_dict moves exp_avg & co. (and, fused, the step
        # counters) to the parameters' device
        resume = load_checkpoint(ckpt_path, map_location="cpu")
        try:
            model.load_state_dict(resume["model"])
            optimizer.load_state_dict(resume["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:  # the model section changed since that run
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"{ckpt_path} was trained with another model than this config describes ({first}); "
                              "resume with the config of that run (its config.yaml) or choose another out_dir") from None
        before = resume.get("train_split")  # absent in checkpoints written before it was recorded
        if before is not None and before != train_split:
            raise ConfigError(
                f"{ckpt_path} was trained on another training split ({before['objects']} objects, digest "
                f"{before['digest']}) than {cfg['data']['path']}'s '{cfg['data']['train_split']}' lists now "
                f"({train_split['objects']} objects, digest {train_split['digest']}): resuming would mix the two and "
                "could score it on objects it trained on; choose another out_dir, or delete this one to start over")
        it, epoch, best = resume["it"], resume["epoch"], resume["best_metric"]
        batch_in_epoch = resume.get("batch_in_epoch", 0)
        skipped_total = resume.get("skipped", 0)
        cpu_before = resume.get("cpu_seconds", 0.0)
        own = rank_rng_state(resume["rng"], dist_info.rank)
        notes = set_rng_state(own, dev) if own is not None else [
            f"rank {dist_info.rank}: the checkpoint holds no random state for this rank; it keeps its seeded streams"]
        if main:
            log(f"resuming from {ckpt_path} at iteration {it} (epoch {epoch})")
        for note in notes:
            log(note)
    average = make_ema(model) if tcfg["ema_decay"] > 0 else None
    if average is not None and resume is not None:
        if isinstance(resume.get("model_ema"), dict):
            average.load_state_dict(resume["model_ema"])
        elif main:
            log(f"{ckpt_path} holds no weight average (trained with train.ema_decay 0): it starts from the weights")
    # what validation scores and generation uses: the average where there is one
    scored = average if average is not None else model
    best = _best_so_far(best, best_path, tcfg["model_selection_mode"])
    # Different seeds per rank only for dropout-like randomness; data order comes from the sampler.
    loss_module = LossModule(model)
    if dist_info.enabled:
        # batch statistics over the global batch, so W processes train like one (CBN included)
        loss_module = convert_sync_batchnorm(loss_module, dev.type)
        loss_module = nn.parallel.DistributedDataParallel(
            loss_module, device_ids=[dev.index] if dev.type == "cuda" else None)
    use_amp = tcfg["amp"] and dev.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    if precision == "bf16":  # bf16 autocast on any device (the fused decoder trunk follows it on CPUs)
        use_amp, amp_dtype = True, torch.bfloat16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    if resume is not None and scaler.is_enabled() and resume.get("scaler"):
        scaler.load_state_dict(resume["scaler"])  # fp16: resume with the loss scale reached, not 2**16
    resume = None
    train_step = TrainingStep(loss_module, dev, compile=compile_step, distributed=dist_info.enabled,
                              autocast=lambda: torch.autocast(dev.type, dtype=amp_dtype, enabled=use_amp),
                              scaler=scaler, log=log if main else None)
    if main and compile_why != "train.compile=false":  # the default says nothing
        log(f"training step: {train_step.describe()} ({compile_why})")

    def checkpoint(path: Path) -> None:
        """Called by every rank (the RNG states are gathered); rank 0 writes."""
        # replicas hold the same weights: every rank raises here together
        if not _finite_state(model) or not _finite_state(scored):
            raise NonFiniteError(f"the model's parameters are not finite at iteration {it}; {path} was not "
                                 f"written (the last one on disk is kept). Lower train.lr or check the data")
        rngs = all_gather_objects(rng_state(dev), dist_info)  # index = rank
        # under torchrun each process's own share of the summed CPU budget, this invocation's
        own_cpu = all_gather_objects(time.process_time() - cpu_start, dist_info) if dist_info.enabled else None
        if main:
            save_checkpoint(path, model=model.state_dict(), optimizer=optimizer.state_dict(), it=it, epoch=epoch,
                            batch_in_epoch=batch_in_epoch, best_metric=best, config=cfg, model_config=cfg["model"],
                            rng=rngs, scaler=scaler.state_dict(), skipped=skipped_total, cpu_seconds=cpu_used(),
                            train_split=train_split,
                            **({"cpu_seconds_per_process": own_cpu} if own_cpu is not None else {}),
                            **({"model_ema": average.state_dict()} if average is not None else {}))

    val_it = None  # the iteration last validated in this invocation

    def run_validation() -> dict:
        """Called by every rank: each validates its share, all get the same metrics and decision."""
        nonlocal best, val_it
        val_it = it
        metrics = validate(scored, val_loader, dev, cfg["test"]["threshold"], points_chunk=tcfg["val_points_chunk"],
                           encode_points=cfg["data"]["points_subsample"], dist_info=dist_info)
        if dev.type == "cpu":
            release_freed_memory()  # validation's buffers: training does not reuse them
        value = metrics[f"val_{tcfg['model_selection_metric']}"]
        if not all(math.isfinite(metrics[f"val_{k}"]) for k in model.val_metrics):
            shown = ", ".join(f"val_{k} {metrics[f'val_{k}']}" for k in model.val_metrics)
            raise NonFiniteError(f"validation at iteration {it} gave {shown}: the model's outputs are not finite; "
                                 f"{best_path} keeps its earlier state. Lower train.lr or check the data")
        better, kept = _selection(value, best, tcfg["model_selection_mode"], tcfg["model_selection_tolerance"])
        if better:
            best = value
        if better or kept:
            checkpoint(best_path)  # records the best metric itself, so a later tolerance is measured from it
        if not main:
            return metrics
        shown = "  ".join(f"val_{name} {metrics[f'val_{name}']:.4f}" for name in model.val_metrics)
        log(f"[it {it}] {shown}"
            + ("  (new best)" if better else "")
            + (f"  (model_best.pt: within {tcfg['model_selection_tolerance']:g} of the best {best:.4f})" if kept else "")
            + (f"  skipped {metrics['val_skipped']}" if metrics["val_skipped"] else ""))
        metrics_log.write(it=it, epoch=epoch, time=round(time.time() - t_start, 2), **metrics)
        if tb is not None:
            for name in model.val_metrics:
                tb.add_scalar(f"val/{name}", metrics[f"val_{name}"], it)
        return metrics

    metrics_log = MetricsLog(out_dir / "metrics.csv", it) if main else None
    tb = _tensorboard(out_dir) if main else None
    max_iters, max_epochs, max_time = tcfg["max_iters"], tcfg["max_epochs"], tcfg["max_time"]
    max_cpu_time, min_iters = tcfg.get("max_cpu_time"), tcfg.get("min_iters") or 0
    t_start, cpu_start = time.time(), time.process_time()
    cpu_agreed = cpu_before  # under torchrun: every process's CPU seconds, summed at the last agreement

    def cpu_used() -> float:
        """Training CPU seconds so far, all threads. Under torchrun the sum over the processes as of
        the last `limit_reached` (at most a step old), so every rank sets the same lr and stops together."""
        if dist_info.enabled:
            return cpu_agreed
        return cpu_before + time.process_time() - cpu_start
    stop_reason, last_val = "", None
    bar = tqdm(total=max_iters, initial=min(it, max_iters) if max_iters else it, desc="train",
               disable=not (progress and main), dynamic_ncols=True)

    def limit_reached() -> str:
        """This process's answer; under torchrun every rank calls it at the same point of the loop."""
        nonlocal cpu_agreed
        if dist_info.enabled and max_cpu_time is not None:
            # one small CPU all-reduce: processes x threads share the budget, as one process's threads do
            cpu_agreed = cpu_before + all_reduce_sum([time.process_time() - cpu_start], dist_info,
                                                     torch.device("cpu"))[0]
        if max_iters is not None and it >= max_iters:
            return f"reached train.max_iters={max_iters}"
        if max_epochs is not None and epoch >= max_epochs:
            return f"reached train.max_epochs={max_epochs}"
        if it < min_iters:  # the time limits below do not stop the run before train.min_iters
            return ""
        # clocks differ between ranks: rank 0's decides (agree_to_stop), all stop at the same iteration
        if max_time is not None and time.time() - t_start >= max_time:
            return f"reached train.max_time={max_time}s"
        # CPU seconds of this process, all its threads (not DataLoader worker processes), summed over
        # the processes under torchrun: a budget that means the same on a shared, busy machine as on
        # a quiet one for single-threaded processes (with more threads, OpenMP's spin-waiting while
        # a thread is descheduled counts too: README)
        if max_cpu_time is not None and cpu_used() >= max_cpu_time:
            return f"reached train.max_cpu_time={max_cpu_time}s"
        return ""

    # the first non-finite training loss: (iteration, value); a tensor, so checking it needs no GPU sync
    first_bad = torch.full((2,), -1.0, dtype=torch.float64, device=dev)

    def check_loss(batch_names: list[str] | None) -> None:
        bad_it, bad_value = first_bad.tolist()
        if bad_it >= 0:
            names = f"; objects in that batch: {', '.join(batch_names[:8])}" if batch_names else ""
            raise NonFiniteError(f"the training loss is not finite ({bad_value}) at iteration {int(bad_it)} "
                                 f"(epoch {epoch}); training stopped without writing a checkpoint of this state"
                                 f"{names}. Lower train.lr, or check the data")

    model.train()
    clock = IterationClock(it)
    stop_reason = agree_to_stop(limit_reached(), dist_info, dev)
    stream.start_at(epoch, batch_in_epoch)
    batches = iter(train_loader)
    n_batches = len(sampler)
    while not stop_reason:
        t_step = time.perf_counter()
        if batch_in_epoch == n_batches:  # the epoch is done: the stream goes on with the next
            epoch += 1
            batch_in_epoch = 0
            stop_reason = agree_to_stop(limit_reached(), dist_info, dev)
            if stop_reason:
                break
        batch = next(batches)
        batch_in_epoch += 1
        n_skipped, n_empty = len(batch["skipped"]), int("points" not in batch)
        if dist_info.enabled and cfg["data"]["skip_bad"]:
            # a rank whose whole batch was skipped must not leave the others alone in the
            # step's collectives: all ranks skip it together (and count skipped loads globally)
            n_skipped, n_empty = agree([n_skipped, n_empty], dist_info)
        skipped_total += n_skipped
        for reason in batch["skipped"]:
            if reason.split(":")[0] not in skipped_names and main:
                log(f"skipping {reason}")
            skipped_names.add(reason.split(":")[0])
        if n_empty:
            continue
        batch = unit_images(to_device(batch, dev))
        optimizer.zero_grad(set_to_none=True)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(tcfg, it, cpu_used())
        loss, parts = train_step(batch)
        scaler.step(optimizer)
        scaler.update()
        if average is not None:
            ema_update(average, model, ema_decay_at(tcfg["ema_decay"], it))
        it += 1
        bar.update(1)
        if governor is not None:  # loading and step, as the user waits for them
            governor.step_done(time.perf_counter() - t_step)
        per_it = clock.tick(it)
        if per_it is not None and main:  # an estimate up front (issue 13), from the run's own steps
            # the CPU budget is all processes' seconds: the ranks' steps are alike
            log(pace_message(it, per_it, tcfg, cpu_per_it=clock.cpu_per_it * dist_info.world_size,
                             cpu_left=None if max_cpu_time is None else max_cpu_time - cpu_used(),
                             time_left=None if max_time is None else max_time - (time.time() - t_start)))
        value = loss.detach().to(torch.float64)
        first_bad.copy_(torch.where((first_bad[0] < 0) & ~torch.isfinite(value),
                                    torch.stack([value.new_tensor(float(it)), value]), first_bad))
        if dist_info.enabled:
            # one decision for every rank, before anything is validated or written at this iteration
            decision = agree_to_stop(limit_reached(), dist_info, dev, nonfinite=first_bad[0] >= 0)
            if decision == NONFINITE_STOP:
                check_loss(None)  # this rank's own NaN, with its iteration
                raise NonFiniteError(f"the training loss is not finite on another process at iteration {it}; "
                                     "training stopped without writing a checkpoint of this state")
        elif dev.type == "cpu" or it % tcfg["print_every"] == 0 or it % tcfg["checkpoint_every"] == 0 \
                or it % tcfg["validate_every"] == 0:  # on a GPU only where the loop synchronises anyway
            check_loss([f"{c}/{m}" for c, m in zip(batch["category"], batch["model_id"])])

        if it % tcfg["print_every"] == 0:
            loss_value = all_reduce_mean(float(loss.detach()), dist_info, dev)
            if main:
                bar.set_postfix(loss=f"{loss_value:.2f}", epoch=epoch)
                metrics_log.write(it=it, epoch=epoch, time=round(time.time() - t_start, 2), loss=loss_value,
                                  skipped=skipped_total)
                if tb is not None:
                    tb.add_scalar("train/loss", loss_value, it)
        # validation first: a kill between the two never leaves a model.pt whose best_metric is stale
        if it % tcfg["validate_every"] == 0:
            last_val = run_validation()
            clock.restart()
        if it % tcfg["checkpoint_every"] == 0:
            checkpoint(ckpt_path)
            clock.restart()
        stop_reason = decision if dist_info.enabled else limit_reached()
    del batches  # stops the loader's workers
    bar.close()
    check_loss(None)
    if dist_info.enabled:
        # every rank must have run the same steps, or their collectives paired up wrongly
        steps = all_gather_objects(it, dist_info)
        if len(set(steps)) != 1:
            raise RuntimeError(f"the processes ran different numbers of training steps {steps}: "
                               "their gradient all-reduces did not pair up")

    # Always leave a model_best.pt that was validated at some point, and a resumable model.pt.
    # The last model is validated too: a budget (time, CPU time, iterations off the validation
    # grid) stops between validations, and with the cosine schedule ending there the last
    # model, trained at the smallest learning rates, is the likeliest best.
    if agree([val_it != it or (main and not best_path.is_file())], dist_info)[0]:
        last_val = run_validation()
    checkpoint(ckpt_path)
    if main:
        if skipped_total:
            log(f"skipped {skipped_total} training loads of {len(skipped_names)} bad objects "
                f"(data.skip_bad=true): {', '.join(sorted(skipped_names)[:10])}")
        log(f"training stopped: {stop_reason}; checkpoints in {out_dir}")
        metrics_log.close()
        if tb is not None:
            tb.close()
    return TrainResult(out_dir, it, epoch, best, last_val, skipped_total, stop_reason)


def _selection(value: float, best: float | None, mode: str, tolerance: float) -> tuple[bool, bool]:
    """(a new best, kept as model_best.pt though not better): the latter when within `tolerance`.

    Validation on a few dozen objects is noisy: once the metric plateaus its maximum is
    often an early checkpoint by chance, while the later ones, trained at smaller learning
    rates, do better on the test split. A tolerance prefers the latest checkpoint that is not
    measurably worse than the best; 0 keeps the strict "better than all before" rule.
    """
    if best is None:
        return True, False
    gain = value - best if mode == "max" else best - value
    return gain > 0, tolerance > 0 and -tolerance <= gain <= 0


def _best_so_far(best: float | None, best_path: Path, mode: str) -> float | None:
    """The best validation metric so far: model.pt's record, or model_best.pt's when that is better.

    model_best.pt can be newer than model.pt (a kill between the two writes); a NaN
    record (checkpoints of older versions) counts as none.
    """
    candidates = [b for b in (best,) if b is not None and math.isfinite(b)]
    if best_path.is_file():
        recorded = load_checkpoint(best_path, map_location="cpu").get("best_metric")
        if recorded is not None and math.isfinite(recorded):
            candidates.append(recorded)
    if not candidates:
        return None
    return max(candidates) if mode == "max" else min(candidates)

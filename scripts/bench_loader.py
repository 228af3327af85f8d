"""Benchmark the training data loader: how long the step waits for its batches.

    python scripts/bench_loader.py --data data/bench_real                 # configs/img.yaml's loader
    python scripts/bench_loader.py --data DIR --config pointcloud --workers 2 --step-ms 26

A stand-in training loop takes batches from `onet train`'s loader for --epochs epochs
(images travel as bytes and become floats in the loop, as in the trainer) and sleeps
--step-ms per batch, as a GPU step leaves the CPU to the loader workers (the
H200's image-model step on a resident batch took 26 ms, README "On a GPU"). Two loaders
over the same batches:
  per-epoch  a DataLoader iterator per epoch (what `onet train` did before 2026-12-07):
             new workers each epoch, their caches empty, the epoch's first batch waited
             for one worker to load all of it
  stream     onet.training.trainer.training_loader: one iterator over epoch after epoch
             (EpochStream), the workers live through the run
First the time one item takes in this process (ShapeDataset[(i, epoch)] over every object);
then, for each loader, the wall time per batch, the time the loop waited for batches and the
wait at the epochs' first batches; nothing is asserted. State the CPU model with the
figures: loading is CPU work (JPEG decoding, resizing, npz reading).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from onet.config import CONFIG_DIR, load_config  # noqa: E402
from onet.data.dataset import DataOptions, ShapeDataset, collate, unit_images  # noqa: E402
from onet.training.distributed import GlobalBatchSampler  # noqa: E402
from onet.training.trainer import training_loader  # noqa: E402
from onet.utils.precision import cpu_description  # noqa: E402


class _OneEpoch(torch.utils.data.Sampler):
    """The sampler's batches of one epoch, tagged with it (the old loop's per-epoch iterator)."""

    def __init__(self, sampler: GlobalBatchSampler):
        self.sampler, self.epoch = sampler, 0

    def __iter__(self):
        return ([(i, self.epoch) for i in b] for b in self.sampler.epoch_batches(self.epoch))

    def __len__(self) -> int:
        return len(self.sampler)


def run(mode: str, ds: ShapeDataset, batch_size: int, workers: int, epochs: int, step_s: float) -> dict:
    sampler = GlobalBatchSampler(len(ds), batch_size, seed=0)
    waits, firsts = [], []
    start = time.perf_counter()
    if mode == "stream":
        stream, loader = training_loader(ds, sampler, workers, False, 0)
        stream.start_at(0)
        batches = iter(loader)
        for _ in range(epochs):
            for k in range(len(sampler)):
                t = time.perf_counter()
                batch = next(batches)
                waits.append(time.perf_counter() - t)
                unit_images(batch)  # bytes to floats, here on the CPU (on a GPU the device does it)
                if k == 0:
                    firsts.append(waits[-1])
                time.sleep(step_s)
        del batches
    else:
        one = _OneEpoch(sampler)
        loader = torch.utils.data.DataLoader(ds, batch_sampler=one, collate_fn=collate, num_workers=workers,
                                             generator=torch.Generator().manual_seed(0))
        for epoch in range(epochs):
            one.epoch = epoch
            t = time.perf_counter()
            for k, batch in enumerate(loader):
                waits.append(time.perf_counter() - t)
                unit_images(batch)
                if k == 0:
                    firsts.append(waits[-1])
                time.sleep(step_s)
                t = time.perf_counter()
    n = len(waits)
    return {"mode": mode, "batches": n, "per_batch": (time.perf_counter() - start) / n,
            "wait": sum(waits) / n, "first": sum(firsts) / len(firsts)}


def item_ms(ds: ShapeDataset, passes: int = 3) -> float:
    """One item loaded in this process, ms: the best of `passes` passes over all objects (the first
    pass of a cold run also reads the files from disk), each pass a new epoch's draws."""
    best = float("inf")
    for epoch in range(passes):
        t = time.perf_counter()
        for i in range(len(ds)):
            ds[(i, epoch)]
        best = min(best, (time.perf_counter() - t) / len(ds))
    return 1e3 * best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a preprocessed dataset (data.path)")
    parser.add_argument("--config", default="img", help="configs/<name>.yaml whose data options are used (img)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="loader worker processes (default 2)")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--step-ms", type=float, default=26.0, help="the stand-in step, ms (default 26)")
    parser.add_argument("--cache", action="store_true", help="data.cache_points and data.cache_images on")
    parser.add_argument("--repeats", type=int, default=2,
                        help="rounds of both loaders, alternating (the first round also warms the OS file cache)")
    args = parser.parse_args(argv)

    overrides = [f"data.path={args.data}"]
    if args.cache:
        overrides += ["data.cache_points=true", "data.cache_images=true"]
    cfg = load_config(CONFIG_DIR / f"{args.config}.yaml", overrides)
    d = cfg["data"]
    options = DataOptions.from_config(d, image_bytes=True)  # as the trainer's datasets
    ds = ShapeDataset(d["path"], d["train_split"], options=options, classes=d["classes"], mode="train", seed=0)
    print(f"{cpu_description()}; torch {torch.__version__}; {len(ds)} training objects of {args.data}, "
          f"configs/{args.config}.yaml's loading, batch {args.batch_size} "
          f"({max(1, len(ds) // args.batch_size)} an epoch), {args.workers} workers, {args.epochs} epochs, "
          f"step {args.step_ms:.0f} ms, caches {'on' if args.cache else 'off'}")
    print(f"one item, loaded in this process: {item_ms(ds):.2f} ms (best of 3 passes over the {len(ds)} objects)")
    print(f"{'loader':<10} {'batches':>7} {'ms/batch':>9} {'waited ms/batch':>16} {'epoch start wait ms':>20}")
    for round_ in range(args.repeats):
        for mode in ("per-epoch", "stream") if round_ % 2 == 0 else ("stream", "per-epoch"):
            r = run(mode, ds, args.batch_size, args.workers, args.epochs, args.step_ms / 1e3)
            print(f"{r['mode']:<10} {r['batches']:>7} {1e3 * r['per_batch']:>9.1f} {1e3 * r['wait']:>16.1f} "
                  f"{1e3 * r['first']:>20.1f}" + ("  (round 1: cold file cache)" if round_ == 0 else ""),
                  flush=True)


if __name__ == "__main__":
    main()

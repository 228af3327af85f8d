"""The unconditional demo (issue 15): synthetic sofas -> VAE -> latent GANs -> samples -> generative metrics.

    python scripts/uncond_demo.py                    # everything (resumes: finished steps are reused)
    python scripts/uncond_demo.py --figure scripts/figures/uncond_demo.png
    python scripts/uncond_demo.py --gammas 0.1,1,10 --seeds 0,1

Steps, each an ordinary onet command (so each resumes like one):
1. `--objects` synthetic sofas (the built-in generator, one category, 70/10/20 split) in `--data`;
2. `onet train configs/unconditional_demo.yaml` (the VAE);
3. `onet train configs/latent_gan_demo.yaml`: every R1 gamma of `--gammas` on the first seed (thesis
   convention, gamma/2 E||grad D||^2), the chosen gamma on the other seeds, and latent_gan.reg=none
   (the ablation) on every seed;
4. `onet generate --samples N` (N = the test split's size) for the VAE's prior and for every GAN;
   `onet generate --encode` + `onet eval` for the VAE's reconstructions of the test split;
5. MMD / COV / 1-NNA (Chamfer-L1 on 2,048 surface points; and on the 32-d codes) of every sampler
   and of the train split against the test split, in one table (OUT/uncond_demo.md);
   the GANs' stability (max ||grad_x D|| on data over training, final W1 on the training codes);
6. `--figure`: a contact sheet, one row per sampler.

Gamma is chosen on the first seed by the final W1 between EMA samples and the training codes
(the criterion the GAN's own log records); the other seeds train with it. The table shows every run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
VAE_CONFIG = "configs/unconditional_demo.yaml"
GAN_CONFIG = "configs/latent_gan_demo.yaml"


def log(msg: str) -> None:
    print(f"[uncond_demo {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def onet(args, *cmd) -> tuple[float, float]:
    """Run `python -m onet CMD` (its log appended to OUT/log.txt); (wall seconds, CPU seconds)."""
    # small networks: one thread each was 4x faster than two on the shared 2-core machine (load 7)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    full = [sys.executable, "-m", "onet", *map(str, cmd), "--no-progress"]
    log(" ".join(map(str, full[2:])))
    t0, c0 = time.time(), _children_cpu()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "log.txt", "a") as f:
        f.write(f"\n$ onet {' '.join(map(str, cmd))}\n")
        f.flush()
        res = subprocess.run(full, env=env, cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
    if res.returncode != 0:
        raise SystemExit(f"`onet {cmd[0]}` failed (exit {res.returncode}); see {out / 'log.txt'}")
    return time.time() - t0, _children_cpu() - c0


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def grid_runs(args) -> list[dict]:
    """The gamma grid (R1) on the first seed, and the ablation without R1 on every seed."""
    runs = [dict(name=f"gan_r1_g{g:g}_s{args.seeds[0]}", reg="r1", gamma=g, seed=args.seeds[0]) for g in args.gammas]
    return runs + [dict(name=f"gan_noreg_s{s}", reg="none", gamma=0.0, seed=s) for s in args.seeds]


def stability(out: Path) -> dict:
    """max ||grad_x D|| on data codes over training, the last W1, iterations (from metrics.csv)."""
    rows = _rows(out / "metrics.csv")
    grads = [float(r["grad_real"]) for r in rows if r.get("grad_real")]
    w1 = [float(r["w1"]) for r in rows if r.get("w1")]
    return dict(max_grad_real=max(grads), last_grad_real=grads[-1], last_w1=w1[-1], iterations=int(rows[-1]["it"]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out/uncond_demo")
    p.add_argument("--data", default="data/synthetic_sofa")
    p.add_argument("--objects", type=int, default=200, help="synthetic sofas (default 200: 140 train, 40 test)")
    p.add_argument("--gammas", default="0.1,1,10", help="R1 gamma grid (thesis convention; default 0.1,1,10)")
    p.add_argument("--seeds", default="0,1", help="GAN seeds, comma-separated (default 0,1)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra overrides for the VAE run")
    p.add_argument("--gan-set", nargs="*", default=[], metavar="KEY=VALUE", help="extra overrides for the GAN runs")
    p.add_argument("--threads", type=int, default=1, help="torch threads per onet process (default 1)")
    p.add_argument("--figure", default=None, help="contact sheet PNG (e.g. scripts/figures/uncond_demo.png)")
    args = p.parse_args()
    args.gammas = [float(g) for g in args.gammas.split(",")]
    args.seeds = [int(s) for s in args.seeds.split(",")]
    sys.path.insert(0, str(REPO))
    out = Path(args.out)
    t_all = time.time()

    from onet.data.synthetic import build_synthetic_dataset
    log(f"1/6 {args.objects} synthetic sofas in {args.data}")
    build_synthetic_dataset(args.data, n_per_class=args.objects, classes=["sofa"], seed=0, n_views=1, img_size=64,
                            progress=False)

    log("2/6 the VAE")
    vae_dir = out / "vae"
    vae_common = [f"out_dir={vae_dir}", f"data.path={args.data}", *args.set]
    timing = {"vae": onet(args, "train", VAE_CONFIG, *vae_common)}

    log("3/6 the latent GANs")

    def train_gan(r: dict) -> dict:
        r["overrides"] = [f"out_dir={out / r['name']}", f"latent_gan.vae_dir={vae_dir}", f"data.path={args.data}",
                          f"latent_gan.reg={r['reg']}", f"latent_gan.gamma={r['gamma'] if r['reg'] == 'r1' else 1.0}",
                          f"seed={r['seed']}", *args.gan_set]
        timing[r["name"]] = onet(args, "train", GAN_CONFIG, *r["overrides"])
        r.update(stability(out / r["name"]))
        return r

    runs = [train_gan(r) for r in grid_runs(args)]
    # gamma: the grid run with the lowest final W1 to the training codes; the other seeds train with it
    best = min((r for r in runs if r["reg"] == "r1"), key=lambda r: r["last_w1"])
    runs += [train_gan(dict(name=f"gan_r1_g{best['gamma']:g}_s{s}", reg="r1", gamma=best["gamma"], seed=s))
             for s in args.seeds[1:]]

    from onet.data.dataset import list_items
    test_items, _ = list_items(args.data, "test", ["sofa"])
    n = len(test_items)
    log(f"4/6 {n} samples per sampler; the VAE's reconstructions of the test split")
    onet(args, "generate", VAE_CONFIG, *vae_common, "--samples", n)
    onet(args, "generate", VAE_CONFIG, *vae_common, "--encode")
    onet(args, "eval", VAE_CONFIG, *vae_common)
    recon = json.loads((vae_dir / "eval" / "eval.json").read_text())
    chosen = [r for r in runs if r["reg"] == "none" or r["gamma"] == best["gamma"]]
    chosen.sort(key=lambda r: (r["seed"], r["reg"] == "none"))
    for r in chosen:
        onet(args, "generate", GAN_CONFIG, *r["overrides"], "--samples", n)

    log("5/6 generative metrics against the test split")
    table = scores(args, vae_dir, chosen, test_items)
    text = report(args, runs, chosen, table, timing, recon, time.time() - t_all)
    (out / "uncond_demo.md").write_text(text)
    print(text)
    if args.figure:
        log("6/6 contact sheet")
        contact_sheet(args, vae_dir, chosen, Path(args.figure))


def scores(args, vae_dir: Path, chosen: list[dict], test_items) -> list:
    from dataclasses import replace

    from onet.config import load_config
    from onet.evaluation.generative import compare, dataset_references, mesh_folder_set, write_generative_tables

    cfg = load_config(REPO / VAE_CONFIG, [f"out_dir={vae_dir}", f"data.path={args.data}", *args.set])
    n_points, seed = cfg["evaluation"]["generative_n_points"], cfg["evaluation"]["seed"]
    # the references exactly as `onet eval --generative` builds them (codes encoded as --encode does)
    reference, train_split = dataset_references(cfg, len(test_items), codes=True)
    sets = [mesh_folder_set(vae_dir / "generation_samples", n_points=n_points, seed=seed, label="VAE prior N(0, I)")]
    for r in chosen:
        label = (f"latent GAN, R1 γ={r['gamma']:g}" if r["reg"] == "r1" else "latent GAN, no R1") + f", seed {r['seed']}"
        sets.append(mesh_folder_set(Path(args.out) / r["name"] / "generation_samples", n_points=n_points, seed=seed,
                                    label=label))
    sets.append(replace(train_split, label="train split (reference)"))
    rows = [compare(s, reference) for s in sets]
    write_generative_tables(rows, Path(args.out) / "generative", reference="test split")
    return rows


def report(args, runs, chosen, rows, timing, recon, seconds) -> str:
    from onet.evaluation.generative import format_generative_markdown

    lines = ["## Samplers against the test split", "", format_generative_markdown(rows), "",
             "## Latent GAN runs (training stability)", "",
             "| run | reg | γ | seed | iterations | max ‖∇_x D‖ on data | last ‖∇_x D‖ | final W1 (std. codes) | "
             "train s (wall) | train CPU s | sampled |", "|" + "---|" * 11]
    for r in runs:
        wall, cpu = timing[r["name"]]
        lines.append(f"| {r['name']} | {r['reg']} | {r['gamma']:g} | {r['seed']} | {r['iterations']} | "
                     f"{r['max_grad_real']:.3f} | {r['last_grad_real']:.3f} | {r['last_w1']:.3f} | {wall:.0f} | "
                     f"{cpu:.0f} | {'yes' if r in chosen else ''} |")
    wall, cpu = timing["vae"]
    mean = {k: round(v, 4) if isinstance(v, float) else v for k, v in recon["mean_over_objects"].items()}
    lines += ["", f"VAE: {wall:.0f} s wall / {cpu:.0f} s CPU of training; reconstructions of the test split "
              f"through the posterior means (`--encode`): {json.dumps(mean)}",
              f"Whole script: {seconds:.0f} s wall."]
    return "\n".join(lines) + "\n"


def contact_sheet(args, vae_dir: Path, chosen: list[dict], path: Path, n: int = 8) -> None:
    from PIL import Image, ImageDraw

    from onet.evaluation.generative import mesh_files
    from onet.geometry.mesh_files import read_mesh
    from onet.report.thumbnails import mesh_thumbnail

    size = 128
    folders = [("VAE prior", vae_dir / "generation_samples")]
    # ASCII labels: PIL's default font has no Greek letters
    folders += [((f"GAN R1 gamma={r['gamma']:g}" if r["reg"] == "r1" else "GAN no R1") + f" seed {r['seed']}",
                 Path(args.out) / r["name"] / "generation_samples") for r in chosen]
    from onet.data.dataset import list_items
    train_items, _ = list_items(args.data, "train", ["sofa"])
    rows = [("train split", [Path(args.data) / c / m / "mesh.ply" for c, m in train_items[:n]])]
    rows += [(label, list(mesh_files(folder).values())[:n]) for label, folder in folders]
    label_w = 150
    sheet = Image.new("RGB", (label_w + n * size, len(rows) * size), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, files) in enumerate(rows):
        draw.text((6, i * size + size // 2 - 6), label, fill=(0, 0, 0))
        for j, f in enumerate(files):
            v, fc = read_mesh(f)
            if len(fc):
                sheet.paste(Image.fromarray(mesh_thumbnail(np.asarray(v, np.float64), fc, size=size)),
                            (label_w + j * size, i * size))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)
    log(f"wrote {path}")


if __name__ == "__main__":
    main()

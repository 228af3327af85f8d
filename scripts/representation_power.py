"""Representation power (thesis Sec. 11.6.4, Fig. 11.6): voxel grids against an occupancy network.

How well can each representation hold the shapes of one category at all?

(a) Voxels: every shape's watertight mesh (mesh.ply) is voxelised at 16^3,
    32^3, 64^3 and 128^3 as the thesis does (a cell is occupied when it meets
    the surface or its centre lies inside), and the IoU of the voxel solid
    with the shape is measured on the uniform points of points.npz.
(b) ONet: an occupancy network with a learned code per shape (an
    auto-decoder; the thesis uses 512-d codes) is fitted to the same shapes'
    occupancy points; meshes are extracted with MISE at the same four
    resolutions and scored with the same IoU (inside test of the mesh).
(c) Plots IoU against resolution and against bytes per shape (voxels: one
    bit per cell; ONet: 4-byte parameters, its network shared over the
    shapes plus one code per shape), like Fig. 11.6, with the network's
    parameter count; writes representation_power.{png,csv,json,md}.

Usage:
    python scripts/representation_power.py --quick            # synthetic chairs, minutes on CPU
    python scripts/representation_power.py --data data/ShapeNetWatertight --category 03001627 \\
        --iters 200000 --device cuda                          # thesis-like (needs mesh.ply per object)

The fit resumes from OUT/autodecoder.pt when interrupted (Ctrl-C saves it).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from onet.data.formats import load_points_npz, read_split  # noqa: E402
from onet.generation import extract_meshes  # noqa: E402
from onet.geometry.inside import inside_mesh  # noqa: E402
from onet.geometry.iou import iou  # noqa: E402
from onet.geometry.mesh_files import read_mesh  # noqa: E402
from onet.geometry.voxelize import voxelize  # noqa: E402
from onet.models import DECODERS, OccupancyNetwork, ShapeEmbedding, count_parameters  # noqa: E402
from onet.utils.checkpoints import load_checkpoint, save_checkpoint  # noqa: E402
from onet.utils.device import resolve_device  # noqa: E402
from onet.utils.io import write_bytes_atomic, write_text_atomic  # noqa: E402

RESOLUTIONS = (16, 32, 64, 128)
BYTES_PER_PARAMETER = 4  # float32


# --------------------------------------------------------------------------- data


def load_shapes(root: Path, category: str, split: str, max_shapes: int | None) -> list[dict]:
    """[{name, vertices, faces, points (N, 3), occ (N,) bool}] of the category's split."""
    lst = root / category / f"{split}.lst"
    if not lst.is_file():
        raise SystemExit(f"error: {lst} not found (check --data, --category and --split)")
    ids = read_split(lst)[:max_shapes]
    shapes = []
    for model_id in ids:
        folder = root / category / model_id
        if not (folder / "mesh.ply").is_file():
            raise SystemExit(f"error: {folder / 'mesh.ply'} not found: voxelising needs each object's watertight "
                             "mesh (datasets from `onet preprocess` and the synthetic one have it)")
        vertices, faces = read_mesh(folder / "mesh.ply")
        pts = load_points_npz(folder / "points.npz")
        shapes.append({"name": f"{category}/{model_id}", "vertices": vertices.astype(np.float64), "faces": faces,
                       "points": pts["points"].astype(np.float32), "occ": pts["occupancies"].astype(bool)})
    if not shapes:
        raise SystemExit(f"error: {lst} lists no objects")
    return shapes


def quick_dataset(out: Path, category: str, n_shapes: int, seed: int) -> Path:
    """A small synthetic dataset of one category (built once, reused on reruns)."""
    from onet.data.synthetic import build_synthetic_dataset

    root = out / "data"
    build_synthetic_dataset(root, n_per_class=n_shapes, classes=[category], seed=seed, n_views=1, img_size=32,
                            split_fractions=(1.0, 0.0, 0.0), progress=True)
    return root


# --------------------------------------------------------------------------- (a) voxels


def voxel_iou(voxels: np.ndarray, points: np.ndarray, occ: np.ndarray) -> float:
    """IoU of the solid of occupied cells (grid over [-0.5, 0.5]^3) with the reference occupancy.

    A point is inside the voxel solid when the cell containing it is occupied:
    exactly the inside test of `voxels_to_mesh(voxels)`, without ray casting.
    """
    R = voxels.shape[0]
    idx = np.floor((points + 0.5) * R).astype(np.int64)
    in_grid = np.all((idx >= 0) & (idx < R), axis=1)
    pred = np.zeros(len(points), dtype=bool)
    i = idx[in_grid]
    pred[in_grid] = voxels[i[:, 0], i[:, 1], i[:, 2]]
    return iou(pred, occ)


def score_voxels(shapes: list[dict], resolutions) -> dict[int, list[float]]:
    scores = {r: [] for r in resolutions}
    for shape in tqdm(shapes, desc="voxelise", unit="shape"):
        def occupancy(p, shape=shape):
            return inside_mesh(shape["vertices"], shape["faces"], p)

        for r in resolutions:
            grid = voxelize(shape["vertices"], shape["faces"], resolution=r, occupancy_fn=occupancy)
            scores[r].append(voxel_iou(grid, shape["points"], shape["occ"]))
    return scores


# --------------------------------------------------------------------------- (b) auto-decoder ONet


def build_autodecoder(n_shapes: int, code_dim: int, hidden: int, n_blocks: int) -> OccupancyNetwork:
    decoder = DECODERS["cbn_resnet"](c_dim=code_dim, hidden_size=hidden, n_blocks=n_blocks)
    return OccupancyNetwork(decoder, encoder=ShapeEmbedding(n_shapes, code_dim))


def fit_autodecoder(model, shapes, *, iters, batch_shapes, n_points, lr, device, ckpt: Path, seed: int) -> dict:
    """Adam on the BCE of `n_points` occupancy samples of `batch_shapes` shapes per step; resumable."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    start, losses = 0, []
    if ckpt.is_file():
        state = load_checkpoint(ckpt, map_location=device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, losses = state["it"], state["losses"]
        print(f"resuming the fit from {ckpt} at iteration {start}")
    points = [torch.from_numpy(s["points"]) for s in shapes]
    occ = [torch.from_numpy(s["occ"].astype(np.float32)) for s in shapes]
    rng = np.random.default_rng([seed, start])
    model.train()
    it = start
    t0 = time.time()
    try:
        for it in tqdm(range(start, iters), desc="fit ONet", initial=start, total=iters):
            # cosine decay: the last iterations settle the codes and the network together
            for group in optimizer.param_groups:
                group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * it / iters))
            index = rng.choice(len(shapes), size=min(batch_shapes, len(shapes)), replace=False)
            sel = [rng.integers(0, len(points[i]), size=n_points) for i in index]
            batch = {
                "points": torch.stack([points[i][s] for i, s in zip(index, sel)]).to(device),
                "points.occ": torch.stack([occ[i][s] for i, s in zip(index, sel)]).to(device),
                "inputs": torch.from_numpy(index).to(device),
            }
            optimizer.zero_grad(set_to_none=True)
            loss, _ = model.compute_loss(batch)
            loss.backward()
            optimizer.step()
            if it % 50 == 0:
                losses.append((it, float(loss.detach())))
        it = iters
    except KeyboardInterrupt:
        print(f"interrupted at iteration {it}; saving {ckpt} (rerun to resume)")
        save_checkpoint(ckpt, model=model.state_dict(), optimizer=optimizer.state_dict(), it=it, losses=losses)
        raise SystemExit(130)
    save_checkpoint(ckpt, model=model.state_dict(), optimizer=optimizer.state_dict(), it=it, losses=losses)
    return {"iterations": it, "seconds_this_run": time.time() - t0, "losses": losses}


@torch.no_grad()
def score_autodecoder(model, shapes, resolutions, *, threshold: float, device, batch: int = 8) -> dict[int, list[float]]:
    model.eval()
    scores = {r: [] for r in resolutions}
    for r in resolutions:
        r0 = min(r, 32)  # MISE from 32^3 (the thesis's start), refined 2x per step up to r
        steps = int(round(math.log2(r / r0)))
        for start in tqdm(range(0, len(shapes), batch), desc=f"mesh ONet {r}^3", unit="batch"):
            chunk = shapes[start:start + batch]
            c = model.encode_inputs(torch.arange(start, start + len(chunk), device=device))
            meshes = extract_meshes(model.make_eval_fn(c), len(chunk), resolution_0=r0, upsampling_steps=steps,
                                    threshold=threshold, device=device)
            for shape, mesh in zip(chunk, meshes):
                inside = inside_mesh(mesh.vertices, mesh.faces, shape["points"])
                scores[r].append(iou(inside, shape["occ"]))
    return scores


# --------------------------------------------------------------------------- (c) plot


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _text(draw, xy, text, font, anchor="la", fill=(0, 0, 0)):
    draw.text(xy, text, font=font, anchor=anchor, fill=fill)


def _log_panel(img, box, series, *, x_label, x_ticks, title, font, small, y_range):
    """Line chart with a log10 x axis. series: [(label, color, [(x, y, point label)])]."""
    draw = ImageDraw.Draw(img)
    x0, y0, x1, y1 = box
    # the legend sits between the title and the axes, so it never hides a curve
    left, right, top, bottom = x0 + 60, x1 - 20, y0 + 40 + 18 * len(series), y1 - 60
    xs = [x for _, _, pts in series for x, _, _ in pts] + list(x_ticks)
    lx_lo, lx_hi = math.log10(min(xs)) - 0.15, math.log10(max(xs)) + 0.15
    y_lo, y_hi = y_range

    def px(x):
        return left + (math.log10(x) - lx_lo) / (lx_hi - lx_lo) * (right - left)

    def py(y):
        return bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top)

    _text(draw, ((left + right) / 2, y0 + 10), title, font, anchor="ma")
    for k in range(int(round(y_lo * 20)), int(round(y_hi * 20)) + 1):  # a line every 0.05, a label every 0.1
        y = k / 20
        draw.line([(left, py(y)), (right, py(y))], fill=(228, 228, 228))
        if k % 2 == 0:
            _text(draw, (left - 6, py(y)), f"{y:.1f}", small, anchor="rm")
    for x, label in x_ticks.items():
        draw.line([(px(x), top), (px(x), bottom)], fill=(235, 235, 235))
        _text(draw, (px(x), bottom + 6), label, small, anchor="ma")
    draw.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    _text(draw, ((left + right) / 2, bottom + 26), x_label, font, anchor="ma")
    _text(draw, (x0 + 6, top - 18), "IoU", font)
    for label, color, pts in series:
        xy = [(px(x), py(y)) for x, y, _ in pts]
        if len(xy) > 1:
            draw.line(xy, fill=color, width=3)
        for (x, y), (_, _, point_label) in zip(xy, pts):
            draw.ellipse([x - 4, y - 4, x + 4, y + 4], fill=color)
            if point_label:
                _text(draw, (x + 6, y + 4), point_label, small, fill=color)
    for i, (label, color, _) in enumerate(series):
        yy = y0 + 32 + 18 * i
        draw.line([(left + 4, yy + 7), (left + 28, yy + 7)], fill=color, width=3)
        _text(draw, (left + 34, yy), label, small)


def plot(result: dict) -> bytes:
    font, small = _font(15), _font(12)
    vox, net = result["voxels"], result["onet"]
    res = [int(r) for r in vox["mean_iou"]]
    all_iou = list(vox["mean_iou"].values()) + list(net["mean_iou"].values())
    y_range = (max(0.0, math.floor(min(all_iou) * 10) / 10 - 0.1), 1.0)  # whole tenths
    blue, orange = (31, 119, 180), (255, 127, 14)
    img = Image.new("RGB", (1200, 470), (255, 255, 255))
    n_params = net["network_parameters"]
    _log_panel(img, (0, 0, 600, 440), [
        (f"voxels ({res[0]}^3 - {res[-1]}^3)", blue, [(r, vox["mean_iou"][str(r)], "") for r in res]),
        ("ONet, MISE at the same resolution", orange, [(r, net["mean_iou"][str(r)], "") for r in res]),
    ], x_label="resolution (cells per axis)", x_ticks={r: f"{r}^3" for r in res}, title="IoU vs resolution",
        font=font, small=small, y_range=y_range)
    onet_bytes = net["bytes_per_shape"]
    units = {0: "B", 3: "kB", 6: "MB", 9: "GB"}
    ticks = {10.0 ** k: f"{10 ** (k % 3)} {units[k - k % 3]}"
             for k in range(int(math.floor(math.log10(min(vox["bytes_per_shape"].values())))),
                            int(math.ceil(math.log10(max(list(vox["bytes_per_shape"].values()) + [onet_bytes])))) + 1)}
    _log_panel(img, (600, 0, 1200, 440), [
        ("voxels (1 bit per cell)", blue, [(vox["bytes_per_shape"][str(r)], vox["mean_iou"][str(r)], f"{r}^3")
                                           for r in res]),
        (f"ONet ({n_params / 1e6:.2f}M network parameters + a {net['code_dim']}-d code per shape), "
         f"MISE at {res[0]}^3 - {res[-1]}^3", orange,
         [(onet_bytes, net["mean_iou"][str(r)], f"{r}^3" if r == res[-1] else "") for r in res]),
    ], x_label=f"bytes per shape (ONet: network shared by {result['n_shapes']} shapes, float32)",
        x_ticks=ticks, title="IoU vs memory", font=font, small=small, y_range=y_range)
    draw = ImageDraw.Draw(img)
    _text(draw, (600, 448), f"{result['dataset_label']}: {result['n_shapes']} shapes of '{result['category']}'; "
          f"IoU on the {result['n_iou_points']} uniform points of points.npz", small, anchor="ma")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


# --------------------------------------------------------------------------- driver


def markdown(result: dict) -> str:
    vox, net = result["voxels"], result["onet"]
    lines = ["| representation | " + " | ".join(f"{r}^3" for r in RESOLUTIONS) + " | bytes per shape |",
             "|:---|" + "---:|" * (len(RESOLUTIONS) + 1)]
    lines.append("| voxels | " + " | ".join(f"{vox['mean_iou'][str(r)]:.3f}" for r in RESOLUTIONS)
                 + " | " + ", ".join(f"{vox['bytes_per_shape'][str(r)]:,}" for r in RESOLUTIONS) + " |")
    lines.append("| ONet (auto-decoder) | " + " | ".join(f"{net['mean_iou'][str(r)]:.3f}" for r in RESOLUTIONS)
                 + f" | {net['bytes_per_shape']:,.0f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="dataset root (default: data/synthetic; --quick builds its own)")
    parser.add_argument("--category", default="chair", help="category folder (default chair)")
    parser.add_argument("--split", default="train", help="split whose shapes are represented (thesis: train)")
    parser.add_argument("--max-shapes", type=int, default=None, help="use at most this many shapes")
    parser.add_argument("--out", default="out/representation_power", help="output folder")
    parser.add_argument("--quick", action="store_true",
                        help="8 synthetic shapes, a narrower network (128) and 1500 steps: minutes on CPU")
    parser.add_argument("--iters", type=int, default=None, help="fit iterations (default 100000; quick 1500)")
    parser.add_argument("--code-dim", type=int, default=512, help="code size per shape (thesis 512)")
    parser.add_argument("--hidden", type=int, default=None, help="decoder width (default 256; quick 128)")
    parser.add_argument("--blocks", type=int, default=5, help="decoder ResNet blocks (default 5)")
    parser.add_argument("--batch-shapes", type=int, default=16, help="shapes per step")
    parser.add_argument("--points", type=int, default=None,
                        help="occupancy samples per shape per step (default 2048; quick 1024)")
    parser.add_argument("--lr", type=float, default=None, help="Adam learning rate (default 1e-4; quick 1e-3)")
    parser.add_argument("--threshold", type=float, default=0.2, help="mesh threshold tau (default 0.2)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default torch's; 1 is fastest on a busy shared machine)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    quick = args.quick
    iters = args.iters or (1500 if quick else 100_000)
    hidden = args.hidden or (128 if quick else 256)
    lr = args.lr or (1e-3 if quick else 1e-4)
    n_points = args.points or (1024 if quick else 2048)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    device = resolve_device(args.device)

    if args.data is not None:
        root, label = Path(args.data), str(args.data)
    elif quick:
        root, label = quick_dataset(out, args.category, args.max_shapes or 8, args.seed), "synthetic data (built-in)"
    else:
        root, label = Path("data/synthetic"), "synthetic data (built-in)"
    max_shapes = args.max_shapes or (8 if quick else None)
    shapes = load_shapes(root, args.category, args.split, max_shapes)
    print(f"{len(shapes)} shapes of '{args.category}' from {root}; device {device}")

    t0 = time.time()
    vox_scores = score_voxels(shapes, RESOLUTIONS)
    t_vox = time.time() - t0

    model = build_autodecoder(len(shapes), args.code_dim, hidden, args.blocks).to(device)
    n_network = count_parameters(model.decoder)
    n_codes = count_parameters(model.encoder)
    print(f"auto-decoder: {n_network:,} network parameters + {len(shapes)} x {args.code_dim} code parameters")
    fit = fit_autodecoder(model, shapes, iters=iters, batch_shapes=args.batch_shapes, n_points=n_points, lr=lr,
                          device=device, ckpt=out / "autodecoder.pt", seed=args.seed)
    t0 = time.time()
    net_scores = score_autodecoder(model, shapes, RESOLUTIONS, threshold=args.threshold, device=device)
    t_mesh = time.time() - t0

    result = {
        "dataset": str(root), "dataset_label": label, "category": args.category, "split": args.split,
        "n_shapes": len(shapes), "n_iou_points": int(len(shapes[0]["points"])), "resolutions": list(RESOLUTIONS),
        "voxels": {
            "mean_iou": {str(r): float(np.mean(v)) for r, v in vox_scores.items()},
            "bytes_per_shape": {str(r): r**3 // 8 for r in RESOLUTIONS},
            "seconds": t_vox,
        },
        "onet": {
            "mean_iou": {str(r): float(np.mean(v)) for r, v in net_scores.items()},
            "network_parameters": n_network, "code_parameters": n_codes, "code_dim": args.code_dim,
            "hidden": hidden, "blocks": args.blocks, "iterations": fit["iterations"], "lr": lr,
            "points_per_shape_per_step": n_points, "batch_shapes": args.batch_shapes,
            "threshold": args.threshold,
            "bytes_per_shape": BYTES_PER_PARAMETER * (n_network + n_codes) / len(shapes),
            "fit_seconds_this_run": fit["seconds_this_run"], "mesh_seconds": t_mesh,
            "loss_first_last": [fit["losses"][0], fit["losses"][-1]] if fit["losses"] else None,
        },
        "per_shape": {s["name"]: {"voxels": {str(r): vox_scores[r][i] for r in RESOLUTIONS},
                                  "onet": {str(r): net_scores[r][i] for r in RESOLUTIONS}}
                      for i, s in enumerate(shapes)},
    }
    write_text_atomic(out / "representation_power.json", json.dumps(result, indent=2) + "\n")
    write_text_atomic(out / "representation_power.md", markdown(result))
    write_bytes_atomic(out / "representation_power.png", plot(result))
    print(markdown(result))
    print(f"voxelising {t_vox:.0f} s, fit {fit['seconds_this_run']:.0f} s ({fit['iterations']} iterations), "
          f"meshing {t_mesh:.0f} s; wrote {out / 'representation_power.png'} (.json, .md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

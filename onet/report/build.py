"""`onet report OUT_DIR`: a static results page of a run folder, OUT_DIR/report/index.html.

Reads only files the other verbs wrote, so it works on any run folder, also one
copied from another machine:

  config.yaml                                   the run's resolved config (`onet train`)
  metrics.csv                                   training curves (`onet train`)
  <evaluation.eval_dir>/eval_classes.csv        the per-class table (`onet eval`)
  <evaluation.eval_dir>/eval_meshes.csv         per-object metrics: the gallery order
  <evaluation.eval_dir>/sweep/sweep.png, .json  the threshold sweep (`onet eval --sweep`)
  <generation.generation_dir>/meshes/, inputs/, time_generation.csv   (`onet generate`)
  the dataset (data.path, or --data)            reference meshes (mesh.ply) or surface points

Missing pieces become a note on the page, never an error: a report of a run
that was trained but not evaluated still shows its config and curves. Images
(thumbnails, the sweep plot) are written into OUT_DIR/report/ so the folder is
self-contained and can be zipped or moved.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import yaml

from onet.data.formats import load_pointcloud_npz
from onet.geometry.mesh_files import FORMATS, read_mesh
from onet.report.html import Series, Table, esc, line_plot, page, table_html
from onet.report.thumbnails import (
    image_thumbnail,
    is_fresh,
    mesh_thumbnail,
    points_thumbnail,
    read_points,
    save_png,
)
from onet.utils.errors import UsageError
from onet.utils.io import write_text_atomic

DISTANCE_KEYS = ("chamfer_l1", "accuracy", "completeness", "chamfer_l2")
LABELS = {"iou": "IoU", "chamfer_l1": "Chamfer-L1", "normal_consistency": "Normal consistency",
          "accuracy": "Accuracy", "completeness": "Completeness", "chamfer_l2": "Chamfer-L2"}
CHAMFER_SCALE = 10  # distances are printed x10 (1/10 of the box), as in the literature and `onet eval`
REFERENCE_MESHES = ("mesh.ply", "mesh.obj", "mesh.off", "model.obj", "model.off")
TIMING_STAGES = ("encode", "evaluate", "marching_cubes", "simplify", "refine", "normals", "total")


@dataclass
class ReportSummary:
    path: Path                       # OUT_DIR/report/index.html
    n_gallery: int                   # objects shown in the gallery
    n_images: int                    # <img> elements on the page
    notes: list[str] = field(default_factory=list)  # what was missing


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _float(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _label(key: str) -> str:
    if key.startswith("fscore@"):
        return f"F-score@{float(key.split('@')[1]) * 100:g}%"
    label = LABELS.get(key, key)
    return label + f" x{CHAMFER_SCALE}" if key in DISTANCE_KEYS else label


def _display(key: str, value: float | None) -> tuple[str, float | str]:
    if value is None:
        return "", ""
    value = value * CHAMFER_SCALE if key in DISTANCE_KEYS else value
    return f"{value:.3f}", value


# ------------------------------------------------------------------ sections


def _config_section(out_dir: Path, cfg: dict | None, notes: list[str]) -> str:
    if cfg is None:
        notes.append(f"no config.yaml in {out_dir}")
        return '<p class="note">No config.yaml in this folder.</p>'
    model = cfg.get("model", {})
    data = cfg.get("data", {})
    facts = [("input", data.get("input_type") or "none (unconditional)"), ("encoder", model.get("encoder")),
             ("decoder", model.get("decoder")), ("c_dim / z_dim", f"{model.get('c_dim')} / {model.get('z_dim')}"),
             ("dataset", data.get("path")), ("threshold tau", cfg.get("test", {}).get("threshold"))]
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
    text = yaml.safe_dump(cfg, sort_keys=False)
    return (f'<table class="plain">{rows}</table>'
            f"<details><summary>the full resolved config (config.yaml)</summary><pre>{esc(text)}</pre></details>")


def _curves_section(out_dir: Path, notes: list[str]) -> str:
    path = out_dir / "metrics.csv"
    if not path.is_file():
        notes.append(f"no metrics.csv in {out_dir}")
        return '<p class="note">No metrics.csv: this folder holds no training log.</p>'
    rows = _read_csv(path)

    def series(key: str) -> Series:
        pts = [(_float(r.get("it")), _float(r.get(key))) for r in rows]
        pts = [(a, b) for a, b in pts if a is not None and b is not None]
        return Series(key, [a for a, _ in pts], [b for _, b in pts])

    plots = [
        line_plot([series("loss")], title="training loss", x_label="iteration", y_label="loss (sum over points)"),
        line_plot([series("val_iou")], title="validation IoU", x_label="iteration", y_label="IoU"),
        line_plot([series("val_loss")], title="validation loss", x_label="iteration", y_label="loss"),
    ]
    plots = [p for p in plots if p]
    if not plots:
        return '<p class="note">metrics.csv holds no rows yet.</p>'
    best = series("val_iou")
    summary = ""
    if best.y:
        i = int(np.argmax(best.y))
        summary = (f"<p>Best validation IoU <b>{best.y[i]:.4f}</b> at iteration {best.x[i]:g} "
                   f"(of {max(series('loss').x + best.x):g} logged).</p>")
    return summary + '<div class="plots">' + "".join(plots) + "</div>"


def _classes_section(eval_dir: Path, notes: list[str]) -> str:
    path = eval_dir / "eval_classes.csv"
    if not path.is_file():
        notes.append(f"no {path}")
        return f'<p class="note">No evaluation tables in {esc(eval_dir)}: run <code>onet eval</code>.</p>'
    rows = _read_csv(path)
    metric_keys = [k for k in rows[0] if k not in ("category", "name", "count", "n_empty")] if rows else []
    metric_keys = [k for k in metric_keys if k != "chamfer_l2"]  # CSV/JSON only, as in the printed tables
    header = ["Class"] + [_label(k) for k in metric_keys] + ["Objects", "Empty"]
    body, footer = [], []
    for r in rows:
        cells = [(r["name"], r["name"])] + [_display(k, _float(r.get(k))) for k in metric_keys]
        cells += [(r["count"], float(r["count"])), (r["n_empty"], float(r["n_empty"]))]
        if r["category"] == "mean":
            footer.append([c[0] for c in cells])
        else:
            body.append(cells)
    caption = (f'<p class="note">Distances x{CHAMFER_SCALE} (unit: 1/{CHAMFER_SCALE} of the box, i.e. of the '
               "normalised longest edge). Click a column header to sort.</p>")
    return caption + table_html(Table(header, body, footer), table_id="classes")


def _timings_section(gen_dir: Path, notes: list[str]) -> str:
    path = gen_dir / "time_generation.csv"
    if not path.is_file():
        notes.append(f"no {path}")
        return '<p class="note">No time_generation.csv: run <code>onet generate</code>.</p>'
    rows = _read_csv(path)
    if not rows:
        return '<p class="note">time_generation.csv holds no rows.</p>'
    stages = [s for s in TIMING_STAGES if s in rows[0]]
    means = {s: float(np.mean([_float(r[s]) or 0.0 for r in rows])) for s in stages}
    cells = "".join(f'<td class="num">{means[s]:.3f}</td>' for s in stages)
    extra = ""
    if "n_faces" in rows[0]:
        faces = [_float(r["n_faces"]) or 0.0 for r in rows]
        extra = f"<p>{len(rows)} meshes, {np.mean(faces):.0f} faces on average.</p>"
    return (extra + '<table class="plain"><thead><tr>' + "".join(f"<th>{esc(s)}</th>" for s in stages)
            + f"</tr></thead><tbody><tr>{cells}</tr></tbody></table>"
            '<p class="note">Mean seconds per mesh and stage (evaluation is shared by a batch of objects and '
            "divided evenly).</p>")


def _sweep_section(eval_dir: Path, report_dir: Path, notes: list[str]) -> str:
    sweep = eval_dir / "sweep"
    png = sweep / "sweep.png"
    if not png.is_file():
        notes.append(f"no {png}")
        return '<p class="note">No threshold sweep: run <code>onet eval CONFIG --sweep</code>.</p>'
    target = report_dir / "sweep.png"
    if not is_fresh(target, png):
        shutil.copyfile(png, target)
    text = ""
    if (sweep / "sweep.json").is_file():
        info = json.loads((sweep / "sweep.json").read_text(encoding="utf-8"))
        score = _float(info.get("best_score"))
        text = (f"<p>Best tau <b>{esc(info.get('best_tau'))}</b> by {esc(info.get('criterion'))} "
                f"({'n/a' if score is None else f'{score:.4f}'}) on {esc(info.get('n_objects'))} objects of split "
                f"'{esc(info.get('split'))}'; the config uses tau = {info.get('current_threshold')}"
                + (f"; the best mean was at {esc(info['max_tau'])}, a lead within one standard error"
                   if info.get("max_tau") not in (None, info.get("best_tau")) else "") + ".</p>")
    return text + '<img src="sweep.png" alt="threshold sweep" style="max-width:100%;width:auto;height:auto">'


# ------------------------------------------------------------------ gallery


def _find_mesh(folder: Path, stem: str, preferred: str | None) -> Path | None:
    suffixes = ([preferred] if preferred else []) + [f for f in FORMATS if f != preferred]
    for suffix in suffixes:
        path = folder / f"{stem}.{suffix}"
        if path.is_file():
            return path
    return None


def _input_thumb(gen_dir: Path, data_root: Path | None, cfg: dict, name: str, target: Path, size: int) -> str | None:
    """Write the input's thumbnail; returns its caption or None when there is no input to show."""
    inputs = gen_dir / "inputs"
    for suffix, kind in ((".png", "image"), (".ply", "points"), (".off", "voxels")):
        src = inputs / f"{name}{suffix}"
        if src.is_file():
            if not is_fresh(target, src):
                if kind == "image":
                    save_png(target, image_thumbnail(src, size=size))
                elif kind == "points":
                    save_png(target, points_thumbnail(read_points(src), size=size))
                else:
                    save_png(target, mesh_thumbnail(*read_mesh(src), size=size))
            return f"input ({kind})"
    data = cfg.get("data", {})
    if data_root is not None and data.get("input_type") == "img":
        views = sorted((data_root / name / data.get("img_folder", "img_choy2016")).glob("*.*"))
        views = [v for v in views if v.suffix.lower() in (".jpg", ".jpeg", ".png")]
        if views:  # view 0, what generation and evaluation use
            if not is_fresh(target, views[0]):
                save_png(target, image_thumbnail(views[0], size=size))
            return "input (image)"
    return None


def _reference_thumb(data_root: Path | None, name: str, target: Path, size: int) -> str | None:
    if data_root is None:
        return None
    folder = data_root / name
    for mesh_name in REFERENCE_MESHES:
        src = folder / mesh_name
        if src.is_file():
            if not is_fresh(target, src):
                save_png(target, mesh_thumbnail(*read_mesh(src), size=size))
            return "reference mesh"
    src = folder / "pointcloud.npz"
    if src.is_file():
        if not is_fresh(target, src):
            cloud = load_pointcloud_npz(src)
            pick = np.random.default_rng(0).permutation(len(cloud["points"]))[:60000]
            save_png(target, points_thumbnail(cloud["points"][pick], cloud["normals"][pick], size=size))
        return "reference (surface points)"
    return None


def _gallery_section(eval_dir: Path, gen_dir: Path, data_root: Path | None, cfg: dict, report_dir: Path, *,
                     max_objects: int | None, size: int, progress: bool, notes: list[str]) -> tuple[str, int]:
    path = eval_dir / "eval_meshes.csv"
    if not path.is_file():
        notes.append(f"no {path}")
        return '<p class="note">No per-object results (eval_meshes.csv): run <code>onet eval</code>.</p>', 0
    rows = _read_csv(path)
    # worst first by IoU; objects without an IoU (point-cloud inputs) after, worst Chamfer first
    rows.sort(key=lambda r: (_float(r.get("iou")) is None, _float(r.get("iou")) or 0.0,
                             -(_float(r.get("chamfer_l1")) or 0.0)))
    total = len(rows)
    if max_objects is not None:
        rows = rows[:max_objects]
    fmt = cfg.get("generation", {}).get("mesh_format")
    items = []
    iterator = rows
    if progress:
        from tqdm import tqdm

        iterator = tqdm(rows, desc="report", unit="obj", dynamic_ncols=True)
    for r in iterator:
        name = f"{r['category']}/{r['model_id']}"
        thumbs = report_dir / "thumbs" / r["category"]
        stem = r["model_id"]
        cells = []
        caption = _input_thumb(gen_dir, data_root, cfg, name, thumbs / f"{stem}_input.png", size)
        cells.append((caption, f"thumbs/{name}_input.png"))
        mesh = _find_mesh(gen_dir / "meshes" / r["category"], stem, fmt)
        if mesh is not None:
            target = thumbs / f"{stem}_pred.png"
            if not is_fresh(target, mesh):
                save_png(target, mesh_thumbnail(*read_mesh(mesh), size=size))
            cells.append(("prediction", f"thumbs/{name}_pred.png"))
        else:
            cells.append((None, "no predicted mesh"))
        caption = _reference_thumb(data_root, name, thumbs / f"{stem}_ref.png", size)
        cells.append((caption, f"thumbs/{name}_ref.png"))
        figures = []
        for caption, src in cells:
            if caption is None:
                figures.append('<figure><div class="missing">not available</div>&nbsp;</figure>')
            else:
                figures.append(f'<figure><img src="{esc(src)}" alt="{esc(caption)} of {esc(name)}" '
                               f'loading="eager"><figcaption>{esc(caption)}</figcaption></figure>')
        metrics = []
        for key in ("iou", "chamfer_l1", "normal_consistency"):
            text, _ = _display(key, _float(r.get(key)))
            if text:
                metrics.append(f"{_label(key)} <b>{text}</b>")
        status = "" if r.get("status", "ok") == "ok" else f' <span class="note">({esc(r["status"])})</span>'
        items.append(f'<div class="item" data-iou="{esc(r.get("iou", ""))}"><div class="imgs">{"".join(figures)}'
                     f'</div><div class="cap">{esc(name)}{status}<br>{" &middot; ".join(metrics)}</div></div>')
    shown = f"all {total}" if len(rows) == total else f"the {len(rows)} worst of {total}"
    if data_root is None:
        notes.append("dataset not found: no reference renderings (pass --data DIR)")
    head = (f"<p>{shown} evaluated objects, worst IoU first: input, predicted mesh and reference, "
            "rendered from the same view.</p>")
    return head + '<div class="gallery">' + "".join(items) + "</div>", len(rows)


# ------------------------------------------------------------------ entry point


def _load_config(out_dir: Path) -> dict | None:
    for path in (out_dir / "config.yaml", out_dir / "generation" / "config.yaml"):
        if path.is_file():
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else None
    return None


def write_report(out_dir: str | Path, *, data_dir: str | Path | None = None, max_objects: int | None = None,
                 size: int = 160, progress: bool = True) -> ReportSummary:
    """Write OUT_DIR/report/index.html (+ its images) for a run folder; returns what it wrote.

    out_dir: a run folder (`out_dir` of a config). data_dir: the dataset, when the config's
    data.path does not point to it from here. max_objects: gallery size (worst IoU first;
    None: every evaluated object). size: thumbnail size in pixels.
    Raises UsageError when out_dir is not a folder or holds nothing onet wrote.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise UsageError(f"run folder not found: {out_dir}")
    if max_objects is not None and max_objects < 0:
        raise UsageError(f"--max-objects must be >= 0, got {max_objects}")
    cfg = _load_config(out_dir)
    eval_dir = out_dir / ((cfg or {}).get("evaluation", {}).get("eval_dir", "eval"))
    gen_dir = out_dir / ((cfg or {}).get("generation", {}).get("generation_dir", "generation"))
    if cfg is None and not (out_dir / "metrics.csv").is_file() and not eval_dir.is_dir():
        raise UsageError(f"{out_dir} holds no config.yaml, metrics.csv or {eval_dir.name}/: "
                         "give the out_dir of a run (onet train / generate / eval)")
    data_root = Path(data_dir) if data_dir else Path((cfg or {}).get("data", {}).get("path") or "")
    if data_dir and not data_root.is_dir():
        raise UsageError(f"--data folder not found: {data_root}")
    if not str(data_root) or not data_root.is_dir():
        data_root = None

    report_dir = out_dir / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    gallery, n_gallery = _gallery_section(eval_dir, gen_dir, data_root, cfg or {}, report_dir,
                                          max_objects=max_objects, size=size, progress=progress, notes=notes)
    sections = [
        ("classes", "Per-class results", _classes_section(eval_dir, notes)),
        ("gallery", "Gallery", gallery),
        ("training", "Training curves", _curves_section(out_dir, notes)),
        ("sweep", "Threshold sweep", _sweep_section(eval_dir, report_dir, notes)),
        ("timings", "Generation timings", _timings_section(gen_dir, notes)),
        ("config", "Configuration", _config_section(out_dir, cfg, notes)),
    ]
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = f"run folder <code>{esc(out_dir.resolve())}</code> &middot; written {stamp} by <code>onet report</code>"
    document = page(f"onet report: {out_dir.resolve().name}", subtitle, sections)
    path = report_dir / "index.html"
    write_text_atomic(path, document)
    return ReportSummary(path=path, n_gallery=n_gallery, n_images=document.count("<img "), notes=notes)

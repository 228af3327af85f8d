"""Generative metrics: how well a set of sampled shapes matches a reference set (`onet eval --generative`).

A sampler is judged as a set, not shape by shape. Let S_g be the generated
shapes and S_r the reference shapes (the test split), and D(X, Y) a distance:
for shapes the Chamfer-L1 of onet's tables between `n_points` (2,048) surface
samples of each, D = (mean_x min_y ||x − y|| + mean_y min_x ||x − y||) / 2,
in box units; for latent codes the Euclidean distance between codes.

- MMD (minimum matching distance, fidelity; lower is better):
  MMD = 1/|S_r| Σ_{Y ∈ S_r} min_{X ∈ S_g} D(X, Y).
- COV (coverage, diversity; higher is better): the fraction of reference
  shapes that are the nearest reference of at least one generated shape,
  COV = |{argmin_{Y ∈ S_r} D(X, Y) : X ∈ S_g}| / |S_r|.
- 1-NNA (1-nearest-neighbour accuracy; 50% is ideal): every shape of
  S_g ∪ S_r is classified by its nearest neighbour among all *other* members
  of the union (only the shape itself is left out, by index) as generated or
  reference; 1-NNA is the fraction classified correctly. A tie between the
  two sets counts as wrong (the classifier cannot tell). Consequences:
  ~50% for two independent samples of one distribution, 100% when the sets are
  separable (spheres against cubes), and ~0% for a set against a copy of itself,
  since every shape's nearest neighbour is its twin in the other set at
  distance 0: below 50% means the samples sit closer to the reference shapes
  than independent draws would (copies), above 50% that they differ from them.

Empty or unreadable generated meshes are kept in the set as failures: they
cover nothing, match no reference (MMD takes the minimum over the others;
the worst-case distance of onet's metrics if none is left) and count as
correctly told apart in 1-NNA; the `empty` column counts them.

Flag `collapse`: the generated shapes match at most max(1, ⌊min(|S_g|, |S_r|)/10⌋)
distinct reference shapes (a sampler returning one shape over and over has
COV = 1/|S_r| and is flagged).

Shape sets come from a folder of meshes (surface samples seeded per mesh name,
so the same mesh under the same name always gives the same points) or from a
dataset split (a seeded subset of pointcloud.npz, else samples of mesh.ply).
Latent codes come from the codes.npz `onet generate` writes beside its
samples, and for the test split from the VAE's posterior means.
"""

from __future__ import annotations

import csv
import io
import json
import math
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from pykdtree.kdtree import KDTree
from tqdm import tqdm

from onet.data.formats import load_pointcloud_npz
from onet.evaluation.metrics import WORST_CASE_DISTANCE
from onet.geometry.mesh_files import READ_SUFFIXES, read_mesh
from onet.geometry.sampling import sample_surface
from onet.utils.io import write_text_atomic

MESH_SUFFIXES = READ_SUFFIXES  # what read_mesh reads
CODES_FILE = "codes.npz"  # written by `onet generate` beside meshes/ (onet.generation.posterior)
COLLAPSE_FRACTION = 0.1


@dataclass
class ShapeSet:
    """A set of shapes to compare as a whole.

    names: one per shape; points: (n_points, 3) float64 surface samples per shape, None for an
    empty or unreadable mesh; codes: (N, z_dim) latent codes in the order of names, or None.
    """

    label: str
    names: list[str]
    points: list[np.ndarray | None]
    codes: np.ndarray | None = None
    problems: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class SetMetrics:
    """MMD (distance units), COV and 1-NNA (fractions in [0, 1]) of a generated set against a reference set."""

    mmd: float
    cov: float
    nna: float
    n_generated: int
    n_reference: int
    n_empty: int
    n_matched: int  # distinct reference shapes that are some generated shape's nearest
    collapse: bool


@dataclass
class GenerativeRow:
    """One sampler's line of the table: metrics on shapes and, when both sets have codes, on codes."""

    label: str
    shapes: SetMetrics
    latent: SetMetrics | None = None
    nearest: list[tuple[str, str, float]] = field(default_factory=list)  # (sample, nearest reference, CD)


# --------------------------------------------------------------------------- distances and metrics


def chamfer_l1(a: np.ndarray, b: np.ndarray) -> float:
    """Chamfer-L1 of onet's tables between point sets a (N, 3) and b (M, 3): the mean of both directed means."""
    da, _ = KDTree(b).query(a, k=1)
    db, _ = KDTree(a).query(b, k=1)
    return 0.5 * (float(np.mean(da)) + float(np.mean(db)))


def chamfer_matrix(points: list[np.ndarray | None], *, progress: bool = False) -> np.ndarray:
    """Symmetric (N, N) Chamfer-L1 between all shapes; inf where either shape is None (empty), 0 on the diagonal
    of non-empty shapes. One kd-tree per shape; N^2 directed queries."""
    n = len(points)
    trees = [KDTree(p) if p is not None else None for p in points]
    directed = np.full((n, n), np.inf)
    for i in tqdm(range(n), desc="chamfer", disable=not progress, dynamic_ncols=True):
        if points[i] is None:
            continue
        for j in range(n):
            if trees[j] is not None:
                d, _ = trees[j].query(points[i], k=1)
                directed[i, j] = float(np.mean(d))
    return 0.5 * (directed + directed.T)


def code_matrix(codes: np.ndarray) -> np.ndarray:
    """Euclidean distances (N, N) between codes (N, z_dim), from the differences themselves (exact 0 for twins)."""
    from scipy.spatial.distance import cdist

    codes = np.asarray(codes, np.float64)
    return cdist(codes, codes)


def set_metrics(d_gr: np.ndarray, d_gg: np.ndarray, d_rr: np.ndarray, *, empty: np.ndarray | None = None,
                worst: float = WORST_CASE_DISTANCE) -> SetMetrics:
    """MMD, COV and 1-NNA (module docstring) from the distances generated x reference (G, R), generated x
    generated (G, G) and reference x reference (R, R). empty: (G,) bool, generated shapes that failed."""
    G, R = d_gr.shape
    if G == 0 or R == 0:
        raise ValueError(f"both sets need at least one shape, got {G} generated and {R} reference")
    empty = np.zeros(G, bool) if empty is None else np.asarray(empty, bool)
    ok = ~empty
    d_ok = d_gr[ok]  # (G', R)
    if len(d_ok):
        mmd = float(d_ok.min(0).mean())
        matched = np.unique(d_ok.argmin(1))
    else:
        mmd, matched = worst, np.zeros(0, int)
    cov = len(matched) / R

    def nearest_other_within(d: np.ndarray) -> np.ndarray:  # min over the row without the diagonal
        if len(d) < 2:
            return np.full(len(d), np.inf)
        masked = d.copy()
        np.fill_diagonal(masked, np.inf)
        return masked.min(1)

    same_g, other_g = nearest_other_within(d_gg), d_gr.min(1)
    same_r = nearest_other_within(d_rr)
    other_r = d_ok.min(0) if len(d_ok) else np.full(R, np.inf)
    correct_g = (same_g < other_g) | empty  # a failed sample is told apart: worst case
    correct_r = same_r < other_r  # strict: a tie with the other set counts as wrong
    nna = float((correct_g.sum() + correct_r.sum()) / (G + R))
    limit = max(1, int(COLLAPSE_FRACTION * min(int(ok.sum()), R)))
    return SetMetrics(mmd=mmd, cov=cov, nna=nna, n_generated=G, n_reference=R, n_empty=int(empty.sum()),
                      n_matched=len(matched), collapse=len(matched) <= limit)


def compare(generated: ShapeSet, reference: ShapeSet, *, progress: bool = False) -> GenerativeRow:
    """The metrics of `generated` against `reference`, on shapes and (when both carry codes) on codes."""
    for s in (generated, reference):
        if len(s) == 0:
            raise ValueError(f"{s.label}: the set is empty")
    if all(p is None for p in reference.points):
        raise ValueError(f"{reference.label}: every reference shape is empty")
    G = len(generated)
    d = chamfer_matrix(generated.points + reference.points, progress=progress)
    empty = np.array([p is None for p in generated.points])
    shapes = set_metrics(d[:G, G:], d[:G, :G], d[G:, G:], empty=empty)
    nearest = []
    for i, name in enumerate(generated.names):
        if not empty[i]:
            k = int(np.argmin(d[i, G:]))
            nearest.append((name, reference.names[k], float(d[i, G + k])))
    latent = None
    if generated.codes is not None and reference.codes is not None:
        if generated.codes.shape[1] != reference.codes.shape[1]:
            raise ValueError(f"codes of {generated.label} are {generated.codes.shape[1]}-d, those of "
                             f"{reference.label} {reference.codes.shape[1]}-d: not the same latent space")
        dz = code_matrix(np.concatenate([generated.codes, reference.codes]))
        latent = set_metrics(dz[:G, G:], dz[:G, :G], dz[G:, G:], worst=math.inf)
    return GenerativeRow(generated.label, shapes, latent, nearest)


# --------------------------------------------------------------------------- shape sets


def _seed(seed: int, name: str) -> int:
    return zlib.crc32(f"{seed}/generative/{name}".encode())


def mesh_dir(folder: str | Path) -> Path:
    """The folder holding the meshes: `folder`, or its meshes/ sub-folder (as `onet generate` writes)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of meshes")
    return folder / "meshes" if (folder / "meshes").is_dir() else folder


def mesh_files(folder: str | Path) -> dict[str, Path]:
    """{name (relative path without suffix): file} of the meshes under `folder` (see `mesh_dir`).
    Hidden files (temporaries) and `onet generate --interpolate`'s interpolation_* meshes (not
    independent samples) are skipped."""
    folder = mesh_dir(folder)
    files = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if (path.is_file() and path.suffix.lower() in MESH_SUFFIXES and not any(p.startswith(".") for p in rel.parts)
                and not path.name.startswith("interpolation_")):
            name = rel.with_suffix("").as_posix()
            if name in files:
                raise ValueError(f"{files[name]} and {path} have the same name; keep one mesh per name")
            files[name] = path
    return files


def _codes_beside(folder: Path, names: list[str]) -> tuple[np.ndarray | None, str | None]:
    """Codes of `names` from a codes.npz in the folder or its parent; (None, why) when absent or incomplete."""
    from onet.generation import read_codes

    for candidate in (folder / CODES_FILE, folder.parent / CODES_FILE):
        if candidate.is_file():
            try:
                table = read_codes(candidate)
            except ValueError as exc:
                return None, str(exc)
            missing = [n for n in names if n not in table]
            if missing:
                return None, f"{candidate} has no code for {len(missing)} meshes (first: {missing[0]})"
            return np.stack([table[n] for n in names]).astype(np.float64), None
    return None, None


def mesh_folder_set(folder: str | Path, *, n_points: int = 2048, seed: int = 0, label: str | None = None,
                    progress: bool = False) -> ShapeSet:
    """The meshes of a folder as a ShapeSet (codes from a codes.npz beside them, when it covers every mesh).

    Raises FileNotFoundError (exit 1) when the folder holds no mesh at all.
    """
    folder = mesh_dir(folder)
    files = mesh_files(folder)
    if not files:
        raise FileNotFoundError(f"{folder}: no meshes ({', '.join(MESH_SUFFIXES)}) to score; draw samples first, "
                                "e.g. `onet generate CONFIG --samples 64`")
    names, points, problems = list(files), [], []
    for name in tqdm(names, desc="sample surfaces", disable=not progress, dynamic_ncols=True):
        try:
            vertices, faces = read_mesh(files[name])
            p, _ = sample_surface(np.asarray(vertices, np.float64), faces, n_points, rng=_seed(seed, name),
                                  dtype=np.float64)
            points.append(p)
        except (ValueError, OSError) as exc:  # empty, zero-area or unreadable: a failed sample
            points.append(None)
            problems.append(f"{files[name]}: {exc}")
    codes, why = _codes_beside(folder, names)
    if why:
        problems.append(why)
    return ShapeSet(label or folder.as_posix(), names, points, codes, problems)


def dataset_set(root: str | Path, items: list[tuple[str, str]], *, n_points: int = 2048, seed: int = 0,
                label: str = "test split", codes: np.ndarray | None = None) -> ShapeSet:
    """Dataset shapes [(category, model_id)] as a ShapeSet: n_points of each pointcloud.npz (a seeded subset),
    else surface samples of its mesh.ply. A shape with neither raises FileNotFoundError naming it."""
    root = Path(root)
    names, points = [], []
    for cat, model_id in items:
        name = f"{cat}/{model_id}"
        folder = root / cat / model_id
        rng = np.random.default_rng(_seed(seed, name))
        if (folder / "pointcloud.npz").is_file():
            cloud = load_pointcloud_npz(folder / "pointcloud.npz")["points"].astype(np.float64)
            p = cloud[rng.choice(len(cloud), size=n_points, replace=len(cloud) < n_points)]
        elif (folder / "mesh.ply").is_file():
            vertices, faces = read_mesh(folder / "mesh.ply")
            p, _ = sample_surface(np.asarray(vertices, np.float64), faces, n_points, rng=rng, dtype=np.float64)
        else:
            raise FileNotFoundError(f"{folder / 'pointcloud.npz'} does not exist (nor mesh.ply): the reference "
                                    "shape has no surface to compare with")
        names.append(name)
        points.append(p)
    return ShapeSet(label, names, points, None if codes is None else np.asarray(codes, np.float64))


# --------------------------------------------------------------------------- tables

HEADER = ["sampler", "shapes", "empty", "MMD-CD", "COV-CD (%)", "1-NNA-CD (%)", "MMD-z", "COV-z (%)",
          "1-NNA-z (%)", "flags"]


def _flags(row: GenerativeRow) -> str:
    flags = []
    if row.shapes.collapse:
        flags.append(f"collapse ({row.shapes.n_matched} of {row.shapes.n_reference} references matched)")
    if row.latent is not None and row.latent.collapse and not row.shapes.collapse:
        flags.append(f"latent collapse ({row.latent.n_matched} of {row.latent.n_reference} codes matched)")
    return "; ".join(flags)


def _cells(row: GenerativeRow, chamfer_scale: float) -> list[str]:
    s, z = row.shapes, row.latent
    latent = ["–", "–", "–"] if z is None else [f"{z.mmd:.3f}", f"{100 * z.cov:.1f}", f"{100 * z.nna:.1f}"]
    return [row.label, str(s.n_generated), str(s.n_empty), f"{chamfer_scale * s.mmd:.4f}", f"{100 * s.cov:.1f}",
            f"{100 * s.nna:.1f}", *latent, _flags(row)]


def format_generative_markdown(rows: list[GenerativeRow], *, reference: str = "test split",
                               chamfer_scale: float = 10) -> str:
    """The samplers side by side as a Markdown table, with the units and the reference named."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_cells(r, chamfer_scale)) + " |" for r in rows]
    n_ref = rows[0].shapes.n_reference if rows else 0
    lines.append("")
    lines.append(f"Reference: {reference} ({n_ref} shapes). MMD-CD: Chamfer-L1 x{chamfer_scale:g} (box units) "
                 "between surface samples; -z: Euclidean distance between VAE codes. 1-NNA: 50% is ideal, "
                 "100% separable, ~0% copies of the reference.")
    return "\n".join(lines)


def write_generative_tables(rows: list[GenerativeRow], out_dir: str | Path, *, reference: str = "test split",
                            chamfer_scale: float = 10, problems: list[str] | None = None) -> dict[str, Path]:
    """generative.md / .csv / .json (all samplers) and generative_samples.csv (each sample's nearest reference
    and its Chamfer-L1), written atomically into out_dir."""
    out = Path(out_dir)
    files = {name: out / name for name in ("generative.md", "generative.csv", "generative.json",
                                           "generative_samples.csv")}
    write_text_atomic(files["generative.md"], format_generative_markdown(rows, reference=reference,
                                                                         chamfer_scale=chamfer_scale) + "\n")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["sampler", "shapes", "empty", "mmd_cd", "cov_cd", "nna_cd", "mmd_z", "cov_z", "nna_z",
                     "collapse"])
    for r in rows:
        z = r.latent
        writer.writerow([r.label, r.shapes.n_generated, r.shapes.n_empty, f"{r.shapes.mmd:.6g}",
                         f"{r.shapes.cov:.6g}", f"{r.shapes.nna:.6g}", *(["", "", ""] if z is None else
                         [f"{z.mmd:.6g}", f"{z.cov:.6g}", f"{z.nna:.6g}"]), int(r.shapes.collapse)])
    write_text_atomic(files["generative.csv"], buf.getvalue())
    doc = {"reference": reference, "chamfer_unit": "box units (multiply by 10 for the table)",
           "problems": problems or [],
           "samplers": [{"label": r.label, "shapes": asdict(r.shapes),
                         "latent": None if r.latent is None else asdict(r.latent)} for r in rows]}
    write_text_atomic(files["generative.json"], json.dumps(doc, indent=2, allow_nan=False, default=str) + "\n")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["sampler", "sample", "nearest_reference", "chamfer_l1"])
    for r in rows:
        writer.writerows([(r.label, n, ref, f"{d:.6g}") for n, ref, d in r.nearest])
    write_text_atomic(files["generative_samples.csv"], buf.getvalue())
    return files


# --------------------------------------------------------------------------- the CLI mode


def dataset_references(cfg: dict, n_train: int, *, codes: bool, progress: bool = False,
                       log=print) -> tuple[ShapeSet, ShapeSet]:
    """(test split, n_train shapes of the train split) of cfg's dataset as ShapeSets, the references of
    a generative table; with `codes`, each shape's posterior-mean code from the config's VAE.

    The train-split shapes are a seeded pick (evaluation.seed) of as many shapes as the sampler drew
    (MMD and COV depend on the set size): the row a perfect sampler would match. Codes are encoded as
    `onet generate --encode` does (data.points_subsample points, data.points_jitter, seeded per shape).
    """
    from onet.data.dataset import list_items
    from onet.generation import encode_shapes
    from onet.models.latent import load_vae

    data, n_points, seed = cfg["data"], cfg["evaluation"]["generative_n_points"], cfg["evaluation"]["seed"]
    items, skipped = list_items(data["path"], data["test_split"], data["classes"], skip_bad=data["skip_bad"])
    train_items, skipped_train = list_items(data["path"], data["train_split"], data["classes"],
                                            skip_bad=data["skip_bad"])
    for problem in skipped + skipped_train:
        log(f"warning: {problem}")
    pick = np.random.default_rng(seed).permutation(len(train_items))[:n_train]
    train_items = [train_items[i] for i in sorted(pick)]
    test_codes = train_codes = None
    if codes:
        vae, _ = load_vae(cfg)
        enc = dict(n_points=data["points_subsample"], points_file=data["points_file"],
                   jitter=data["points_jitter"], seed=cfg["seed"], progress=progress)
        test_codes = encode_shapes(vae, data["path"], items, **enc)
        train_codes = encode_shapes(vae, data["path"], train_items, **enc)
    return (dataset_set(data["path"], items, n_points=n_points, seed=seed, label=f"{data['test_split']} split",
                        codes=test_codes),
            dataset_set(data["path"], train_items, n_points=n_points, seed=seed,
                        label=f"{data['train_split']} split", codes=train_codes))


def run_generative(cfg: dict, args, *, log=print) -> int:
    """`onet eval CONFIG --generative [--pred DIR]` (samples against the test split, codes from the config's VAE)
    or `onet eval --generative --pred DIR --gt DIR` (any two folders of meshes)."""
    from onet.utils.errors import UsageError

    ecfg = cfg["evaluation"]
    others: list[ShapeSet] = []  # reference rows beside the sampler's (CONFIG mode: the train split)
    n_points, seed, progress = ecfg["generative_n_points"], ecfg["seed"], not args.no_progress
    if args.gt is not None:
        if args.pred is None:
            raise UsageError("--generative --gt DIR needs --pred DIR: the folder of samples to score")
        generated = mesh_folder_set(args.pred, n_points=n_points, seed=seed, progress=progress)
        reference = mesh_folder_set(args.gt, n_points=n_points, seed=seed, progress=progress)
        out = Path(args.output or "eval_generative")
    else:
        pred = Path(args.pred or Path(cfg["out_dir"]) / (cfg["generation"]["generation_dir"] + "_samples"))
        generated = mesh_folder_set(pred, n_points=n_points, seed=seed, label=Path(cfg["out_dir"]).name,
                                    progress=progress)
        reference, train_reference = dataset_references(cfg, len(generated), codes=generated.codes is not None,
                                                        progress=progress, log=log)
        others.append(train_reference)
        out = Path(args.output or Path(cfg["out_dir"]) / ecfg["eval_dir"] / "generative")
    rows = [compare(s, reference, progress=progress) for s in [generated, *others]]
    problems = generated.problems + reference.problems
    for problem in problems:
        log(f"warning: {problem}")
    write_generative_tables(rows, out, reference=reference.label, problems=problems)
    log(format_generative_markdown(rows, reference=reference.label))
    log(f"tables written to {out}")
    return 0

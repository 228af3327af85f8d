"""Posterior tools for the unconditional VAE, and the codes `onet generate` decodes without an observation.

- `encode_shapes`: posterior means E[z | points, occupancies] of dataset shapes,
  from the same kind of input the latent encoder saw in training
  (`n_points` occupancy samples of points.npz, drawn with replacement, seeded
  per object so the code of a shape never changes between runs).
- `latent_jobs`: the (name, z) pairs of every latent mode of `onet generate`:
  `--samples N` (the VAE's N(0, I) prior, or a latent GAN's samples),
  `--interpolate K` (between two such samples, or `--between A B`: two named
  dataset shapes through their posterior means) and `--encode` (the test split
  through its posterior means, named like a conditional model's meshes).
- `codes.npz` beside the meshes records every job's z (`write_codes` /
  `read_codes`), so `onet eval --generative` can also compare samplers in the
  latent space.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from onet.data.dataset import list_items
from onet.data.formats import load_points_npz
from onet.models.latent import LatentSampler, file_digest, load_latent_sampler, load_vae
from onet.utils.errors import UsageError
from onet.utils.io import savez_atomic

CODES_FILE = "codes.npz"


def _object_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(f"{seed}/encode/{name}".encode()))


def encode_shapes(model, root: str | Path, items: list[tuple[str, str]], *, n_points: int,
                  points_file: str = "points.npz", jitter: float = 0.0, seed: int = 0,
                  device: torch.device | str = "cpu", batch_size: int = 16, progress: bool = False) -> np.ndarray:
    """Posterior means of the VAE `model` for dataset shapes `items` [(category, model_id)].

    Each shape is seen as `n_points` occupancy samples of root/<cat>/<id>/<points_file>
    (with replacement, seeded per shape by `seed`; `jitter` as data.points_jitter).
    Returns codes (N, z_dim) float32. A missing or broken points file raises
    (DataFormatError / OSError) naming it.
    """
    if getattr(model, "encoder_latent", None) is None or model.z_dim == 0:
        raise ValueError("encoding shapes needs a VAE: a model with a latent encoder (model.encoder_latent)")
    if n_points < 1:
        raise ValueError(f"n_points must be >= 1, got {n_points}")
    root = Path(root)
    codes = np.zeros((len(items), model.z_dim), np.float32)
    bar = tqdm(total=len(items), desc="encode", disable=not progress, dynamic_ncols=True)
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        pts, occs = [], []
        for cat, model_id in chunk:
            name = f"{cat}/{model_id}"
            rng = _object_rng(seed, name)
            data = load_points_npz(root / cat / model_id / points_file)
            sel = rng.integers(0, len(data["points"]), size=n_points)
            p = data["points"][sel]
            if jitter > 0:
                p = p + (jitter * rng.standard_normal(p.shape)).astype(np.float32)
            pts.append(p)
            occs.append(data["occupancies"][sel])
        p = torch.from_numpy(np.stack(pts)).to(device)  # (B, T, 3)
        occ = torch.from_numpy(np.stack(occs).astype(np.float32)).to(device)  # (B, T)
        with torch.no_grad():
            c = model.encode_inputs(None, batch_size=len(chunk))
            mean, _ = model.infer_z(p, occ, c)  # (B, z_dim)
        codes[start:start + len(chunk)] = mean.float().cpu().numpy()
        bar.update(len(chunk))
    bar.close()
    return codes


def find_shapes(root: str | Path, names: list[str], *, points_file: str = "points.npz",
                option: str = "--between") -> list[tuple[str, str]]:
    """(category, model_id) of each 'category/model_id' name; UsageError (exit 2) naming one that is not a shape
    of the dataset (no <root>/<category>/<model_id>/<points_file>)."""
    root = Path(root)
    out = []
    for name in names:
        parts = name.strip("/").split("/")
        folder = root.joinpath(*parts) if len(parts) == 2 and all(parts) else None
        if folder is None or not (folder / points_file).is_file():
            example = next((f"{p.parent.parent.name}/{p.parent.name}" for p in sorted(root.glob(f"*/*/{points_file}"))),
                           "chair/chair_0003")
            where = f"{folder / points_file} does not exist" if folder is not None else "expected category/model_id"
            raise UsageError(f"{option} {name}: not a shape of the dataset {root} ({where}); name shapes as "
                             f"category/model_id, e.g. {example}")
        out.append((parts[0], parts[1]))
    return out


def interpolate(z0: torch.Tensor, z1: torch.Tensor, steps: int) -> list[torch.Tensor]:
    """`steps` (>= 2) codes on the segment from z0 to z1 (both (z_dim,)), endpoints included."""
    steps = max(int(steps), 2)
    return [(1 - i / (steps - 1)) * z0 + (i / (steps - 1)) * z1 for i in range(steps)]


def latent_jobs(model, cfg: dict, *, samples: int = 0, interpolate_steps: int = 0,
                between: list[str] | None = None, encode: bool = False, sampler: LatentSampler | None = None,
                device: torch.device | str = "cpu", progress: bool = False, log=print) -> list[tuple[str, torch.Tensor]]:
    """The (name, z (z_dim,)) pairs `onet generate` decodes with the VAE `model` (see the module docstring).

    sampler: a latent GAN's sampler; None draws from the VAE's N(0, I) prior. Draws are
    seeded by cfg['seed'] (the same names get the same codes on a rerun).
    """
    data = cfg["data"]
    enc = dict(n_points=data["points_subsample"], points_file=data["points_file"], jitter=data["points_jitter"],
               seed=cfg["seed"], device=device)
    if (between or encode) and getattr(model, "encoder_latent", None) is None:
        raise UsageError("--encode and --between need a VAE with a latent encoder (model.encoder_latent)")
    if between is not None and not interpolate_steps:
        raise UsageError("--between A B names the two ends of an interpolation: give --interpolate STEPS too")
    g = torch.Generator().manual_seed(cfg["seed"])

    def draw(n: int) -> torch.Tensor:
        if sampler is not None:
            return sampler.sample(n, generator=g).float().cpu()
        return torch.randn(n, model.z_dim, generator=g)

    jobs: list[tuple[str, torch.Tensor]] = []
    if samples:
        jobs += [(f"sample_{i:03d}", z) for i, z in enumerate(draw(samples))]
    if interpolate_steps:
        if between is not None:
            ends = find_shapes(data["path"], list(between), points_file=data["points_file"])
            z0, z1 = torch.from_numpy(encode_shapes(model, data["path"], ends, **enc))
            path = interpolate(z0, z1, interpolate_steps)
        elif sampler is not None:  # a GAN interpolates in its noise space
            n0, n1 = torch.randn(2, sampler.noise_dim, generator=g)
            noise = torch.stack(interpolate(n0, n1, interpolate_steps)).to(sampler.mean.device)
            with torch.no_grad():
                path = list(sampler(noise).float().cpu())
        else:
            z0, z1 = draw(2)
            path = interpolate(z0, z1, interpolate_steps)
        jobs += [(f"interpolation_{i:03d}", z) for i, z in enumerate(path)]
    if encode:
        items, problems = list_items(data["path"], data["test_split"], data["classes"], skip_bad=data["skip_bad"])
        for problem in problems:  # data.skip_bad: listed without a folder
            log(f"skipped: {problem}")
        codes = encode_shapes(model, data["path"], items, progress=progress, **enc)
        jobs += [(f"{c}/{m}", torch.from_numpy(z)) for (c, m), z in zip(items, codes)]
    return jobs


def write_codes(path: str | Path, names: list[str], codes: np.ndarray) -> None:
    """codes.npz: names (N,) str and codes (N, z_dim) float32, written atomically.

    Codes of other names already in the file are kept (a folder gathers --samples and
    --interpolate runs); codes of a different size (another model) are replaced.
    """
    codes = np.asarray(codes, np.float32).reshape(len(names), -1)
    table = {}
    if Path(path).is_file():
        try:
            table = {n: z for n, z in read_codes(path).items() if z.shape == codes.shape[1:]}
        except ValueError:  # unreadable: rewritten whole
            table = {}
    table.update(zip(names, codes))
    savez_atomic(path, names=np.asarray(list(table), dtype=str), codes=np.stack(list(table.values())))


def read_codes(path: str | Path) -> dict[str, np.ndarray]:
    """{name: z (z_dim,)} from a codes.npz; ValueError naming the file when it is malformed."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            names, codes = [str(n) for n in f["names"]], np.asarray(f["codes"], np.float32)
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: not a codes file with 'names' and 'codes' ({exc})") from None
    if codes.ndim != 2 or len(codes) != len(names):
        raise ValueError(f"{path}: codes must be (N, z_dim) for N = {len(names)} names, got {codes.shape}")
    return dict(zip(names, codes))


def load_latent_gan(cfg: dict, checkpoint: str | Path | None, device: torch.device | str):
    """(VAE model, LatentSampler, GAN checkpoint path) of a latent-GAN config.

    checkpoint: the GAN's file (default out_dir/test.model_file). The VAE is the one of
    latent_gan.vae_dir (ConfigError, exit 2, when that is not a VAE run); it must be the very
    checkpoint the GAN was trained on, since the GAN's samples are codes of that VAE.
    """
    vae, vae_path = load_vae(cfg, device)
    path = Path(checkpoint) if checkpoint else Path(cfg["out_dir"]) / cfg["test"]["model_file"]
    sampler, meta = load_latent_sampler(path, device)
    if meta["vae_digest"] != file_digest(vae_path):
        raise RuntimeError(f"{path} was trained on the codes of {meta['vae_checkpoint']}, not of the current "
                           f"{vae_path} (it changed since): retrain the latent GAN (`onet train` with a new out_dir)")
    if sampler.generator.out_dim != vae.z_dim:
        raise RuntimeError(f"{path} generates {sampler.generator.out_dim}-d codes but the VAE {vae_path} has "
                           f"z_dim {vae.z_dim}")
    return vae, sampler, path

"""`onet train` for a latent-GAN config: a GAN over the shape codes of a trained VAE.

onet's extension, built from the thesis's GAN recipe (Part I, §8.2): no seed
trains a GAN on 3D shapes; the thesis's unconditional ONet is a VAE sampled
from its prior. Here the VAE of `latent_gan.vae_dir` encodes every training
shape to its posterior mean; the codes are standardised per dimension and an
MLP generator and discriminator are trained on them with the recipe:

- non-saturating generator loss (`latent_gan.loss: ns`);
- R1 = γ/2 · E_data ||∇_x D||² on the discriminator (thesis convention: public
  code's γ = 10 is γ = 20 here; `latent_gan.reg: none` is the ablation);
- RMSProp (α = 0.99, no momentum) or Adam with β1 = 0, at train.lr;
- alternating updates, a generator step then a discriminator step on the same z;
- an exponential moving average of G's weights, which is what generates;
- no normalisation layers in D.

Top to bottom: resolve the VAE, encode (or reuse) the training codes, build
G, D, the EMA and the optimizers, resume from out_dir/model.pt, loop, log
discriminator gradient norms to metrics.csv, checkpoint. The loop uses the
train keys batch_size, lr, lr_schedule, max_iters, max_epochs (passes over the
codes), max_time (not before min_iters), print_every, validate_every (a W1 diagnostic) and
checkpoint_every.

metrics.csv columns: it, epoch, time, loss_d (incl. the penalty), loss_g,
d_real / d_fake (mean logits), grad_real / grad_fake (mean ||∇_x D|| on data
codes / generated codes, in standardised units), grad_d (norm of D's parameter
gradient in its last update) and, every validate_every iterations, w1: the
exact-assignment W1 between EMA samples and the training codes (standardised).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from onet.config import save_config
from onet.data.dataset import ensure_builtin_dataset, list_items
from onet.gan import GameConfig, ema_update, gan_step, make_ema, make_optimizer, wasserstein1
from onet.generation import encode_shapes
from onet.models.latent import build_latent_networks, file_digest, load_vae
from onet.training.trainer import MetricsLog, TrainResult, learning_rate, seed_everything
from onet.utils.checkpoints import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from onet.utils.device import resolve_device
from onet.utils.errors import ConfigError, UsageError
from onet.utils.io import savez_atomic

LOG_FIELDS = ["it", "epoch", "time", "loss_d", "loss_g", "d_real", "d_fake", "grad_real", "grad_fake", "grad_d", "w1"]
CODES_NAME = "codes.npz"  # the standardisation's source: the training split's posterior means
W1_SAMPLES = 1024  # cap of the W1 diagnostic's sample size (exact assignment is O(n^3))
STD_FLOOR = 1e-4  # a latent dimension the VAE left unused has (almost) no spread across shapes


def training_codes(cfg: dict, vae, vae_path: Path, digest: str, out_dir: Path, device: torch.device, *,
                   progress: bool, log) -> tuple[list[str], np.ndarray]:
    """Posterior means of the training split (names, codes (N, z_dim)), cached in out_dir/codes.npz for this
    exact VAE checkpoint and split."""
    data = cfg["data"]
    items, problems = list_items(data["path"], data["train_split"], data["classes"], skip_bad=data["skip_bad"])
    for problem in problems:
        log(f"skipped: {problem}")
    if not items:
        raise RuntimeError(f"{data['path']}: the {data['train_split']} split is empty: no shapes to encode")
    names = [f"{c}/{m}" for c, m in items]
    cache = out_dir / CODES_NAME
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as f:
            if str(f["vae_digest"]) == digest and [str(n) for n in f["names"]] == names \
                    and int(f["n_points"]) == data["points_subsample"]:
                return names, np.asarray(f["codes"], np.float32)
    log(f"encoding {len(items)} training shapes of {data['path']} with the VAE {vae_path}")
    codes = encode_shapes(vae, data["path"], items, n_points=data["points_subsample"],
                          points_file=data["points_file"], jitter=data["points_jitter"], seed=cfg["seed"],
                          device=device, progress=progress)
    if not np.isfinite(codes).all():
        raise RuntimeError(f"the VAE {vae_path} gave non-finite codes; check that checkpoint")
    savez_atomic(cache, names=np.asarray(names, dtype=str), codes=codes, vae_digest=np.asarray(digest),
                 n_points=np.asarray(data["points_subsample"]))
    return names, codes


def _grad_norms(D, x: torch.Tensor) -> float:
    """Mean ||∇_x D(x)|| over the rows of x (B, z_dim)."""
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(D(x).sum(), x)
    return float(g.norm(dim=1).mean())


def train_latent_gan(cfg: dict, *, device: str | None = None, progress: bool = True, log=print) -> TrainResult:
    """Train the latent GAN of `cfg` into cfg['out_dir'], resuming from model.pt when present (module docstring)."""
    threads = torch.get_num_threads()
    try:
        return _train_latent_gan(cfg, device=device, progress=progress, log=log)
    finally:
        torch.set_num_threads(threads)


def _train_latent_gan(cfg: dict, *, device: str | None, progress: bool, log) -> TrainResult:
    lg, tcfg = cfg["latent_gan"], cfg["train"]
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("the latent GAN trains in one process (it is small); run `onet train` without torchrun")
    if tcfg["max_iters"] is None and tcfg["max_time"] is None and tcfg["max_epochs"] is None:
        raise ConfigError("a latent GAN needs a stopping rule: set train.max_iters (or train.max_time / max_epochs)")
    if tcfg["lr_schedule"] == "cosine" and tcfg["max_iters"] is None:
        raise ConfigError("train.lr_schedule=cosine needs train.max_iters (the horizon of the decay)")
    dev = resolve_device(device or cfg["device"])
    out_dir = Path(cfg["out_dir"])
    seed_everything(cfg["seed"])

    # --- the VAE and its codes (ConfigError naming latent_gan.vae_dir when it is not a VAE run)
    vae, vae_path = load_vae(cfg, dev)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / "config.yaml")
    digest = file_digest(vae_path)
    ckpt_path = out_dir / "model.pt"
    state = load_checkpoint(ckpt_path, map_location=dev) if ckpt_path.is_file() else None
    if state is not None and state.get("vae_digest") != digest:
        raise RuntimeError(f"{ckpt_path} was trained on the codes of another VAE checkpoint than {vae_path} "
                           f"(it changed since); use a new out_dir or delete {ckpt_path}")
    ensure_builtin_dataset(cfg["data"]["path"], seed=cfg["seed"], progress=progress, log=log)
    names, codes = training_codes(cfg, vae, vae_path, digest, out_dir, dev, progress=progress, log=log)
    del vae
    if dev.type == "cpu":
        # steps of small MLPs are latency-bound: one thread was 20x faster than two on a busy 2-core machine
        torch.set_num_threads(1)
    codes_t = torch.from_numpy(codes).to(dev)
    mean, std = codes_t.mean(0), codes_t.std(0, unbiased=False).clamp_min(STD_FLOOR)
    x_data = (codes_t - mean) / std  # (N, z_dim) standardised training codes
    n_codes, z_dim = x_data.shape

    # --- networks, EMA, optimizers, game
    hp = {"noise_dim": lg["noise_dim"], "z_dim": z_dim, "hidden_size": lg["hidden_size"], "n_layers": lg["n_layers"]}
    G, D = build_latent_networks(hp)
    G, D = G.to(dev), D.to(dev)
    G_ema = make_ema(G)
    opt_g = make_optimizer(G.parameters(), lg["optimizer"], tcfg["lr"])
    opt_d = make_optimizer(D.parameters(), lg["optimizer"], tcfg["lr"])
    game = GameConfig(loss=lg["loss"], reg=lg["reg"], gamma=lg["gamma"])
    it = 0
    if state is not None:
        G.load_state_dict(state["generator"])
        D.load_state_dict(state["discriminator"])
        G_ema.load_state_dict(state["generator_ema"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        it = state["it"]
        for note in set_rng_state(state["rng"], dev):
            log(note)
        log(f"resuming from {ckpt_path} at iteration {it}")
    log(f"latent GAN on {n_codes} codes (z_dim {z_dim}) of {vae_path}: {game.loss} loss, reg {game.reg}"
        + (f" (gamma {game.gamma}, thesis convention gamma/2 E||grad D||^2)" if game.reg != "none" else "")
        + f", {lg['optimizer']} lr {tcfg['lr']}, EMA {lg['ema_decay']}")

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, generator=G.state_dict(), discriminator=D.state_dict(),
                        generator_ema=G_ema.state_dict(), opt_g=opt_g.state_dict(), opt_d=opt_d.state_dict(), it=it,
                        rng=rng_state(dev), config=cfg, latent_gan=hp, code_mean=mean.cpu(), code_std=std.cpu(),
                        vae_checkpoint=str(vae_path), vae_digest=digest)

    batch = tcfg["batch_size"]

    def sample_real() -> torch.Tensor:
        return x_data[torch.randint(n_codes, (batch,), device=dev)]

    def sample_z() -> torch.Tensor:
        return torch.randn(batch, hp["noise_dim"], device=dev)

    # a fixed noise batch and data subset for the W1 diagnostic, so its values are comparable over time
    g_w1 = torch.Generator().manual_seed(cfg["seed"] + 1)
    n_w1 = min(n_codes, W1_SAMPLES)
    w1_data = x_data[torch.randperm(n_codes, generator=g_w1)[:n_w1].to(dev)].cpu().numpy()
    w1_noise = torch.randn(n_w1, hp["noise_dim"], generator=g_w1).to(dev)

    metrics = MetricsLog(out_dir / "metrics.csv", it, fields=LOG_FIELDS)
    max_iters, max_time, max_epochs = tcfg["max_iters"], tcfg["max_time"], tcfg["max_epochs"]

    def epoch_of(i: int) -> int:
        return i * batch // n_codes

    def limit_reached() -> str:
        if max_iters is not None and it >= max_iters:
            return f"reached train.max_iters={max_iters}"
        if max_epochs is not None and epoch_of(it) >= max_epochs:
            return f"reached train.max_epochs={max_epochs}"
        if max_time is not None and it >= (tcfg.get("min_iters") or 0) and time.time() - t_start >= max_time:
            return f"reached train.max_time={max_time}s"
        return ""

    t_start = time.time()
    bar = tqdm(total=max_iters, initial=min(it, max_iters) if max_iters else it, desc="train latent GAN",
               disable=not progress, dynamic_ncols=True)
    last_w1 = None
    stop_reason = limit_reached()
    try:
        while not stop_reason:
            for group in (*opt_g.param_groups, *opt_d.param_groups):
                group["lr"] = learning_rate(tcfg, it)
            losses = gan_step(G, D, opt_g, opt_d, sample_real, sample_z, game)
            ema_update(G_ema, G, lg["ema_decay"])
            it += 1
            bar.update(1)
            if not (math.isfinite(losses["loss_d"]) and math.isfinite(losses["loss_g"])):
                raise RuntimeError(f"the latent GAN diverged at iteration {it} (loss_d {losses['loss_d']}, loss_g "
                                   f"{losses['loss_g']}); {ckpt_path} keeps the last finite state: lower train.lr or "
                                   "use latent_gan.reg=r1")
            row = None
            if it % tcfg["print_every"] == 0:
                # D's parameter gradient of its last update (gan_step leaves it in .grad)
                grad_d = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in D.parameters() if p.grad is not None))
                with torch.no_grad():
                    xr, xf = sample_real(), G(sample_z())
                    d_real, d_fake = float(D(xr).mean()), float(D(xf).mean())
                row = dict(it=it, epoch=epoch_of(it), time=round(time.time() - t_start, 2), loss_d=losses["loss_d"],
                           loss_g=losses["loss_g"], d_real=d_real, d_fake=d_fake, grad_real=_grad_norms(D, xr),
                           grad_fake=_grad_norms(D, xf), grad_d=grad_d)
                bar.set_postfix(loss_d=f"{losses['loss_d']:.3f}", grad_real=f"{row['grad_real']:.2f}")
            if it % tcfg["validate_every"] == 0:
                with torch.no_grad():
                    fake = G_ema(w1_noise).cpu().numpy()
                last_w1 = wasserstein1(fake, w1_data)
                row = row or dict(it=it, epoch=epoch_of(it), time=round(time.time() - t_start, 2))
                row["w1"] = last_w1
                log(f"[it {it}] W1(EMA samples, training codes) {last_w1:.4f} (standardised units)")
            if row is not None:
                metrics.write(**row)
            if it % tcfg["checkpoint_every"] == 0:
                checkpoint()
            stop_reason = limit_reached()
    finally:
        bar.close()
        metrics.close()
    checkpoint()
    log(f"training stopped: {stop_reason}; checkpoint {ckpt_path}")
    return TrainResult(out_dir, it, epoch_of(it), None, None if last_w1 is None else {"w1": last_w1}, 0, stop_reason)

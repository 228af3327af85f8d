"""The latent GAN over a VAE's shape codes (onet's extension, not in the thesis): networks and loading.

The thesis's unconditional ONet is a VAE (eq. 11.4) sampled from its N(0, I)
prior. A latent GAN learns the distribution of the VAE's posterior means
instead: G maps noise to a per-dimension standardised code, and
`LatentSampler` undoes the standardisation, so its output goes straight into
the VAE's decoder. D is a plain MLP without normalisation layers (R1 needs
each logit to depend on its own sample only).

A config is a latent GAN when `latent_gan.vae_dir` is set; `load_vae` resolves
and checks the VAE run it points at (a ConfigError, exit 2, names the key).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from onet.models import build_model
from onet.utils.checkpoints import CheckpointError, inference_weights, load_checkpoint
from onet.utils.errors import ConfigError

__all__ = ["LatentMLP", "LatentSampler", "GAN_KEYS", "is_latent_gan", "vae_checkpoint_path", "load_vae",
           "file_digest", "build_latent_networks", "load_latent_sampler"]

# the hyperparameters that rebuild G and D (stored in the checkpoint)
GAN_KEYS = ("noise_dim", "z_dim", "hidden_size", "n_layers")


class LatentMLP(nn.Module):
    """x (B, in_dim) -> (B, out_dim): n_layers hidden linear layers of width hidden_size with LeakyReLU(0.2).

    No normalisation layers: every output depends on its own input row only,
    which R1's per-sample input gradients rely on.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden_size: int = 256, n_layers: int = 3):
        super().__init__()
        if min(in_dim, out_dim, hidden_size, n_layers) < 1:
            raise ValueError(f"LatentMLP sizes must be >= 1, got in_dim={in_dim}, out_dim={out_dim}, "
                             f"hidden_size={hidden_size}, n_layers={n_layers}")
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(n_layers):
            layers += [nn.Linear(width, hidden_size), nn.LeakyReLU(0.2)]
            width = hidden_size
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build_latent_networks(hp: dict) -> tuple[LatentMLP, LatentMLP]:
    """(G: noise (B, noise_dim) -> standardised code (B, z_dim), D: code (B, z_dim) -> logit (B, 1)) from GAN_KEYS."""
    G = LatentMLP(hp["noise_dim"], hp["z_dim"], hp["hidden_size"], hp["n_layers"])
    D = LatentMLP(hp["z_dim"], 1, hp["hidden_size"], hp["n_layers"])
    return G, D


class LatentSampler(nn.Module):
    """z = mean + std * G(noise): samples in the VAE's latent space. mean, std: (z_dim,)."""

    def __init__(self, generator: LatentMLP, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        if mean.shape != (generator.out_dim,) or std.shape != mean.shape:
            raise ValueError(f"mean and std must be ({generator.out_dim},), got {tuple(mean.shape)}, {tuple(std.shape)}")
        self.generator = generator
        self.register_buffer("mean", mean.detach().clone().float())
        self.register_buffer("std", std.detach().clone().float())

    @property
    def noise_dim(self) -> int:
        return self.generator.in_dim

    def forward(self, noise: torch.Tensor) -> torch.Tensor:
        """noise (B, noise_dim) -> codes (B, z_dim)."""
        return self.mean + self.std * self.generator(noise)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """n codes (n, z_dim) on the sampler's device; noise drawn on the CPU from `generator` (reproducible)."""
        noise = torch.randn(n, self.noise_dim, generator=generator).to(self.mean.device)
        return self(noise)


def is_latent_gan(cfg: dict) -> bool:
    """Whether a (validated) config describes a latent GAN rather than an occupancy network."""
    return cfg.get("latent_gan", {}).get("vae_dir") is not None


def vae_checkpoint_path(cfg: dict) -> Path:
    """The checkpoint of the VAE a config decodes with: latent_gan.vae_dir/latent_gan.vae_checkpoint for a
    latent GAN, else the config's own out_dir/test.model_file."""
    if is_latent_gan(cfg):
        return Path(cfg["latent_gan"]["vae_dir"]) / cfg["latent_gan"]["vae_checkpoint"]
    return Path(cfg["out_dir"]) / cfg["test"]["model_file"]


def file_digest(path: str | Path) -> str:
    """sha256 of a file (identifies the exact VAE checkpoint a latent GAN was trained on)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_vae(cfg: dict, device: torch.device | str = "cpu"):
    """The unconditional VAE of `cfg` (see `vae_checkpoint_path`) in eval mode on `device`, and its path.

    Raises ConfigError (exit 2) naming latent_gan.vae_dir when a latent-GAN config points at a
    folder without that checkpoint or at a run whose model is not an unconditional VAE
    (no latent encoder, or conditioned on an observation).
    """
    path = vae_checkpoint_path(cfg)
    key = "latent_gan.vae_dir" if is_latent_gan(cfg) else "out_dir"
    try:
        state = load_checkpoint(path, map_location="cpu")
    except CheckpointError as exc:
        if is_latent_gan(cfg):
            raise ConfigError(f"{key}: {path.parent} holds no VAE checkpoint {path.name} ({exc}); train the VAE "
                              "first (`onet train configs/unconditional.yaml`) and point latent_gan.vae_dir at "
                              "its out_dir") from None
        raise
    model_cfg = state.get("model_config")
    if not isinstance(model_cfg, dict) or "model" not in state:
        raise ConfigError(f"{key}: {path} is not an onet model checkpoint (no model / model_config)")
    if not model_cfg.get("encoder_latent") or int(model_cfg.get("z_dim", 0)) <= 0:
        raise ConfigError(f"{key}: {path} is not a VAE (its model has no latent encoder: model.encoder_latent is "
                          f"{model_cfg.get('encoder_latent')!r}, model.z_dim {model_cfg.get('z_dim')}); a latent GAN "
                          "needs an unconditional VAE run such as configs/unconditional.yaml")
    if model_cfg.get("encoder") is not None:
        raise ConfigError(f"{key}: {path} is a conditional model (model.encoder {model_cfg['encoder']!r}); a latent "
                          "GAN needs an unconditional VAE (model.encoder null)")
    model = build_model(model_cfg)
    model.load_state_dict(inference_weights(state))
    return model.to(device).eval(), path


def load_latent_sampler(path: str | Path, device: torch.device | str = "cpu") -> tuple[LatentSampler, dict]:
    """The EMA generator of a latent-GAN checkpoint as a LatentSampler (eval mode, on `device`), and the
    checkpoint's metadata (it, vae_checkpoint, vae_digest, hyperparameters)."""
    state = load_checkpoint(path, map_location="cpu")
    if "generator_ema" not in state or "latent_gan" not in state:
        raise CheckpointError(f"{path} is not a latent-GAN checkpoint (no generator_ema); train one with "
                              "`onet train configs/latent_gan.yaml`")
    G, _ = build_latent_networks(state["latent_gan"])
    G.load_state_dict(state["generator_ema"])
    sampler = LatentSampler(G, state["code_mean"], state["code_std"]).to(device).eval()
    meta = {k: state.get(k) for k in ("it", "vae_checkpoint", "vae_digest", "latent_gan")}
    return sampler, meta

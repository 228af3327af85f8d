"""The Occupancy Network: encoder + decoder (+ optional VAE latent encoder)."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from onet.geometry.iou import iou_per_threshold
from onet.models.decoders import OccupancyDecoder
from onet.models.kinds import FIELD


class OccupancyNetwork(nn.Module):
    """f(p, c[, z]) -> occupancy logits.

    Args:
        decoder: an `OccupancyDecoder`; its `c_dim` / `z_dim` define the model's.
        encoder: observation encoder inputs -> c (B, c_dim), or None (unconditional,
            c_dim must then be 0).
        encoder_latent: q(z | p, occ, c) -> (mean, logstd), or None. With z_dim > 0 and
            no latent encoder, z is always drawn from the prior and the KL term is 0.

    The prior over z is N(0, I).
    """

    output_kind = FIELD
    val_metrics = ("loss", "iou")

    def __init__(
        self,
        decoder: OccupancyDecoder,
        encoder: nn.Module | None = None,
        encoder_latent: nn.Module | None = None,
    ):
        super().__init__()
        self.c_dim = decoder.c_dim
        self.z_dim = decoder.z_dim
        if encoder is None and self.c_dim > 0:
            raise ValueError(f"no encoder but c_dim={self.c_dim}: an unconditional model needs c_dim 0")
        enc_c = getattr(encoder, "c_dim", self.c_dim)
        if encoder is not None and enc_c != self.c_dim:
            raise ValueError(f"encoder c_dim {enc_c} != decoder c_dim {self.c_dim}")
        if encoder_latent is not None and getattr(encoder_latent, "z_dim", self.z_dim) != self.z_dim:
            raise ValueError(f"latent encoder z_dim {encoder_latent.z_dim} != decoder z_dim {self.z_dim}")
        if encoder_latent is not None and self.z_dim == 0:
            raise ValueError("a latent encoder needs z_dim > 0")
        self.decoder = decoder
        self.encoder = encoder
        self.encoder_latent = encoder_latent

    def _device(self) -> torch.device:
        return self.decoder.fc_p.weight.device

    def encode_inputs(self, inputs: Any, *, batch_size: int | None = None) -> torch.Tensor:
        """Observation code c.

        Args:
            inputs: the encoder's input (images (B, 3, H, W), points (B, T, 3),
                voxels (B, 32, 32, 32)). Without an encoder, inputs is only used for its
                batch size (any tensor with batch first) and may be None when
                `batch_size` is given.
            batch_size: B when there is no encoder and inputs is None.
        Returns:
            c (B, c_dim); an empty (B, 0) tensor without an encoder.
        """
        if self.encoder is not None:
            return self.encoder(inputs)
        if isinstance(inputs, torch.Tensor) and inputs.dim() > 0:
            batch_size = inputs.shape[0]
        if batch_size is None:
            raise ValueError("unconditional model: pass a tensor as inputs or batch_size=")
        return torch.empty(batch_size, 0, device=self._device(), dtype=self.decoder.fc_p.weight.dtype)

    def infer_z(
        self, p: torch.Tensor, occ: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior q(z | p, occ, c). p: (B, T, 3); occ: (B, T); c: (B, c_dim).

        Returns mean (B, z_dim), logstd (B, z_dim) (the prior's zeros without a
        latent encoder).
        """
        if self.encoder_latent is not None:
            return self.encoder_latent(p, occ, c if self.c_dim > 0 else None)
        zeros = p.new_zeros(p.shape[0], self.z_dim)
        return zeros, zeros

    def get_z_from_prior(
        self, batch_size: int, *, sample: bool = True, device: torch.device | str | None = None
    ) -> torch.Tensor:
        """z ~ N(0, I), or its mean (zeros) when sample=False. Returns (B, z_dim)."""
        device = self._device() if device is None else device
        dtype = self.decoder.fc_p.weight.dtype
        if sample:
            return torch.randn(batch_size, self.z_dim, device=device, dtype=dtype)
        return torch.zeros(batch_size, self.z_dim, device=device, dtype=dtype)

    def decode(self, p: torch.Tensor, z: torch.Tensor | None, c: torch.Tensor | None) -> torch.Tensor:
        """p: (B, T, 3); z: (B, z_dim) (or None if z_dim 0); c: (B, c_dim). Returns logits (B, T)."""
        return self.decoder(p, z if self.z_dim > 0 else None, c)

    def forward(self, p: torch.Tensor, inputs: Any, *, sample: bool = True) -> torch.Tensor:
        """Logits (B, T) at points p (B, T, 3) given inputs, z from the prior."""
        B = p.shape[0]
        c = self.encode_inputs(inputs, batch_size=B)
        z = self.get_z_from_prior(B, sample=sample, device=p.device)
        return self.decode(p, z, c)

    def compute_loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Training loss for points batch["points"] (B, T, 3) with occupancies batch["points.occ"]
        (B, T), given the observations batch["inputs"].

        BCE with logits summed over points and averaged over the batch, plus (for
        the VAE) KL(q(z | p, occ, c) || N(0, I)) averaged over the batch, with a
        reparameterised sample of z.
        Returns (loss scalar, {"loss", "rec", "kl"} as detached 0-d tensors: converting them to
        floats would wait for the device every step, so callers do it only when they log).
        """
        p, occ, inputs = batch["points"], batch["points.occ"], batch["inputs"]
        B = p.shape[0]
        occ = occ.to(p.dtype)
        c = self.encode_inputs(inputs, batch_size=B)
        if self.z_dim > 0:
            mean, logstd = self.infer_z(p, occ, c)
            z = mean + torch.exp(logstd) * torch.randn_like(mean)
            kl = _kl_to_prior(mean, logstd).mean()
        else:
            z = None
            kl = p.new_zeros(())
        logits = self.decode(p, z, c)
        rec = F.binary_cross_entropy_with_logits(logits, occ, reduction="none").sum(dim=1).mean()
        # not rec + 0 without a latent: torch.compile (inductor, torch 2.13) folds that sum into rec
        # and returns a loss without gradient beside the detached parts
        loss = rec + kl if self.z_dim > 0 else rec
        return loss, {"loss": loss.detach(), "rec": rec.detach(), "kl": kl.detach()}

    def validation_logits(self, batch: dict, *, points_chunk: int | None = None,
                          encode_points: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, T) at batch["points"] as validation scores them, and the KL term per object (B,).

        z: for a VAE (a latent encoder), the posterior mean of q(z | the first `encode_points`
        of the object's points and occupancies) — the reconstruction `onet generate --encode`
        scores — with its KL to the prior; zeros KL otherwise, and z the prior mean. The prior
        mean for a VAE (the reference code's choice) would score the decoder's mean shape,
        which is best when z is ignored, so model selection would favour a collapsed posterior.
        encode_points: the number of points the latent encoder saw in training
            (data.points_subsample; its max-pooling depends on it); None: all of them.
        points_chunk: decode at most this many points (over the batch) per call: in eval
            mode every point is decoded on its own, so only the memory changes (100k points x
            a batch of objects through the plain forward is gigabytes of activations).
        """
        p, occ = batch["points"], batch["points.occ"]
        B, T = p.shape[:2]
        c = self.encode_inputs(batch["inputs"], batch_size=B)
        kl = p.new_zeros(B)
        if self.encoder_latent is not None and self.z_dim > 0:
            n = T if encode_points is None else max(1, min(T, int(encode_points)))
            # the dataset's points are a uniform random draw, so the first n are one too
            z, logstd = self.infer_z(p[:, :n], occ[:, :n].to(p.dtype), c)
            kl = _kl_to_prior(z, logstd)
        else:
            z = self.get_z_from_prior(B, sample=False, device=p.device)
        step = T if points_chunk is None else max(1, points_chunk // B)
        return torch.cat([self.decode(p[:, i:i + step], z, c) for i in range(0, T, step)], dim=1), kl

    def validation_metrics(self, batch: dict, threshold: float, *, points_chunk: int | None = None,
                           encode_points: int | None = None) -> dict[str, torch.Tensor]:
        """Per object (B,): "loss", the BCE summed over batch["points"] (+ the KL term for a
        VAE: a negative ELBO), and "iou" at probability `threshold` against
        batch["points.occ"]; the logits of `validation_logits` (its arguments)."""
        logits, kl = self.validation_logits(batch, points_chunk=points_chunk, encode_points=encode_points)
        occ = batch["points.occ"]
        loss = F.binary_cross_entropy_with_logits(logits, occ, reduction="none").sum(-1) + kl
        return {"loss": loss, "iou": iou_per_threshold(logits, occ, [threshold])[:, 0].to(logits.device)}

    def make_eval_fn(
        self, c: torch.Tensor, z: torch.Tensor | None = None, *, chunk_points: int | None = None,
        precision: str = "fp32", batched: bool | None = None,
    ) -> Callable[[torch.Tensor], torch.Tensor]:
        """Fast inference closure for mesh extraction (eval mode only).

        Args:
            c: (B, c_dim) codes from `encode_inputs` ((B, 0) when unconditional).
            z: (B, z_dim), default the prior mean (zeros).
            chunk_points, precision, batched: see `OccupancyDecoder.make_eval_fn`.
        Returns:
            fn(p (B, N, 3)) -> logits (B, N), equal to `decode(p, z, c)` in eval mode
            up to float rounding; runs under inference_mode.
        """
        if self.training:
            raise RuntimeError("make_eval_fn needs eval mode (running statistics): call model.eval() first")
        B = c.shape[0]
        if self.z_dim > 0:
            z = self.get_z_from_prior(B, sample=False, device=c.device) if z is None else z
        else:
            z = None
        return self.decoder.make_eval_fn(c, z, chunk_points=chunk_points, precision=precision, batched=batched)

    def make_field_fn(self, c: torch.Tensor, z: torch.Tensor | None = None, *,
                      precision: str = "fp32") -> Callable[[torch.Tensor], torch.Tensor]:
        """Differentiable field of one object for refinement and vertex normals (eval mode only).

        Args:
            c: (1, c_dim) code from `encode_inputs` ((1, 0) when unconditional).
            z: (1, z_dim), default the prior mean (zeros); ignored when z_dim == 0.
            precision: "fp32" or "bf16", see `OccupancyDecoder.make_field_fn`.
        Returns:
            fn(p (1, N, 3)) -> logits (1, N), equal to `decode(p, z, c)` in eval mode up
            to float rounding and differentiable w.r.t. p; see
            `OccupancyDecoder.make_field_fn`.
        """
        if self.training:
            raise RuntimeError("make_field_fn needs eval mode (running statistics): call model.eval() first")
        if self.z_dim > 0:
            z = self.get_z_from_prior(1, sample=False, device=c.device) if z is None else z
        else:
            z = None
        return self.decoder.make_field_fn(c, z, precision=precision)


def _kl_to_prior(mean: torch.Tensor, logstd: torch.Tensor) -> torch.Tensor:
    """Closed-form KL(N(mean, std^2) || N(0, I)) per object (B,), summed over the latent dimensions."""
    return (0.5 * (torch.exp(2 * logstd) + mean**2 - 1) - logstd).sum(dim=1)

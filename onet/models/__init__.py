"""Models: encoders, decoders, conditional batch norm, VAE, registry.

    from onet.models import build_model
    model = build_model({"encoder": "pointnet_resnet", "encoder_kwargs": {},
                         "decoder": "cbn_resnet", "decoder_kwargs": {},
                         "c_dim": 512, "z_dim": 0,
                         "encoder_latent": None, "encoder_latent_kwargs": {}})

Registries are plain dicts name -> class; `build_model` is the one place that
turns the `model:` config section into a network. The decoder decides the
network and its output kind (onet.models.kinds): the occupancy decoders give
an `OccupancyNetwork` (an occupancy field), `r2n2` an `R2N2` (a 32^3 voxel
grid), `psgn` a `PSGN` (a point set); any encoder can feed any of them.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from onet.models.decoders import (
    BatchNormDecoder,
    CBNNoResnetDecoder,
    CBNResnetDecoder,
    OccupancyDecoder,
    SimpleDecoder,
)
from onet.models.embedding import ShapeEmbedding
from onet.models.image import PretrainedWeightsUnavailable, ResNet18Encoder
from onet.models.kinds import FIELD, OUTPUT_KINDS, POINTS, TARGETS, VOXELS
from onet.models.onet import OccupancyNetwork
from onet.models.pointnet import LatentPointnet, ResnetPointnet, SimplePointnet
from onet.models.psgn import PSGN, PSGNDecoder
from onet.models.r2n2 import R2N2, R2N2Decoder
from onet.models.voxels import VoxelEncoder
from onet.utils.checkpoints import load_checkpoint

ENCODERS = {
    "resnet18": ResNet18Encoder,
    "pointnet_resnet": ResnetPointnet,
    "pointnet_simple": SimplePointnet,
    "voxel_simple": VoxelEncoder,
}

DECODERS = {
    "cbn_resnet": CBNResnetDecoder,
    "batchnorm": BatchNormDecoder,
    "cbn_noresnet": CBNNoResnetDecoder,
    "simple": SimpleDecoder,
    # baselines (thesis App. E.2): their decoders predict a voxel grid / a point set, not a field
    "r2n2": R2N2Decoder,
    "psgn": PSGNDecoder,
}

# output kind -> the network class that wraps encoder and decoder
NETWORKS = {
    FIELD: OccupancyNetwork,
    VOXELS: R2N2,
    POINTS: PSGN,
}

LATENT_ENCODERS = {
    "pointnet_latent": LatentPointnet,
}

MODEL_KEYS = (
    "encoder", "encoder_kwargs", "decoder", "decoder_kwargs",
    "c_dim", "z_dim", "encoder_latent", "encoder_latent_kwargs",
)

__all__ = [
    "ENCODERS", "DECODERS", "LATENT_ENCODERS", "NETWORKS", "MODEL_KEYS",
    "build_model", "count_parameters", "output_kind", "data_targets",
    "OccupancyNetwork", "OccupancyDecoder", "R2N2", "PSGN", "ShapeEmbedding", "PretrainedWeightsUnavailable",
    "FIELD", "VOXELS", "POINTS", "OUTPUT_KINDS",
]


def _build(kind: str, registry: dict[str, type], name: str, kwargs: dict[str, Any] | None,
           fixed: dict[str, Any]) -> nn.Module:
    """Instantiate registry[name](**kwargs, **fixed), with errors that name the component."""
    if name not in registry:
        raise ValueError(f"unknown {kind} {name!r}; valid choices: {', '.join(sorted(registry))}")
    kwargs = dict(kwargs or {})
    cls = registry[name]
    for key in fixed:
        if key in kwargs:
            raise ValueError(f"{kind} {name!r}: set {key} in the model section (model.{key}), not in {kind}_kwargs")
    kwargs.update(fixed)
    try:
        inspect.signature(cls).bind(**kwargs)
    except TypeError as e:
        valid = [k for k in inspect.signature(cls).parameters if k not in fixed]
        raise ValueError(f"{kind} {name!r}: {e}; valid {kind}_kwargs: {', '.join(valid)}") from None
    return cls(**kwargs)


def output_kind(model_cfg: dict[str, Any]) -> str:
    """The output kind (onet.models.kinds) of the network a `model:` section builds, without building it."""
    name = model_cfg.get("decoder", "cbn_resnet")
    if name not in DECODERS:
        raise ValueError(f"unknown decoder {name!r}; valid choices: {', '.join(sorted(DECODERS))}")
    # the occupancy decoders (onet.models.decoders) predict a field; the baselines say what they predict
    return getattr(DECODERS[name], "output_kind", FIELD)


def data_targets(model_cfg: dict[str, Any]) -> tuple[str, ...]:
    """Dataset fields the network trains on beyond the occupancy points (onet.models.kinds.TARGETS)."""
    return TARGETS[output_kind(model_cfg)]


def build_model(model_cfg: dict[str, Any]) -> nn.Module:
    """Build the network of the `model:` config section (not mutated).

    Keys (see configs/default.yaml): encoder (str | None), encoder_kwargs,
    decoder (str), decoder_kwargs, c_dim, z_dim, encoder_latent (str | None),
    encoder_latent_kwargs. c_dim / z_dim are passed to the parts that take them.
    Returns an OccupancyNetwork, R2N2 or PSGN, as the decoder's output kind says.
    Raises ValueError for unknown keys, unknown component names, bad kwargs and
    inconsistent sizes.
    """
    unknown = sorted(set(model_cfg) - set(MODEL_KEYS))
    if unknown:
        raise ValueError(f"unknown model config keys {unknown}; valid: {', '.join(MODEL_KEYS)}")
    c_dim = int(model_cfg.get("c_dim", 0))
    z_dim = int(model_cfg.get("z_dim", 0))
    enc_name = model_cfg.get("encoder")
    lat_name = model_cfg.get("encoder_latent")
    kind = output_kind(model_cfg)
    if kind != FIELD:
        return _build_baseline(model_cfg, kind, enc_name, lat_name, c_dim, z_dim)
    if enc_name is None and c_dim != 0:
        raise ValueError(f"model.encoder is null (unconditional) but model.c_dim is {c_dim}; set c_dim: 0")
    if enc_name is not None and c_dim <= 0:
        raise ValueError(f"model.encoder {enc_name!r} needs model.c_dim > 0, got {c_dim}")
    if lat_name is not None and z_dim <= 0:
        raise ValueError(f"model.encoder_latent {lat_name!r} needs model.z_dim > 0, got {z_dim}")

    decoder = _build("decoder", DECODERS, model_cfg.get("decoder", "cbn_resnet"),
                     model_cfg.get("decoder_kwargs"), {"z_dim": z_dim, "c_dim": c_dim})
    encoder = None
    if enc_name is not None:
        encoder = _build("encoder", ENCODERS, enc_name, model_cfg.get("encoder_kwargs"), {"c_dim": c_dim})
    elif model_cfg.get("encoder_kwargs"):
        raise ValueError("model.encoder_kwargs given but model.encoder is null")
    encoder_latent = None
    if lat_name is not None:
        encoder_latent = _build("encoder_latent", LATENT_ENCODERS, lat_name,
                                model_cfg.get("encoder_latent_kwargs"), {"z_dim": z_dim, "c_dim": c_dim})
    elif model_cfg.get("encoder_latent_kwargs"):
        raise ValueError("model.encoder_latent_kwargs given but model.encoder_latent is null")
    return OccupancyNetwork(decoder, encoder=encoder, encoder_latent=encoder_latent)


def _build_baseline(model_cfg: dict[str, Any], kind: str, enc_name: str | None, lat_name: str | None,
                    c_dim: int, z_dim: int) -> nn.Module:
    """R2N2 / PSGN: an observation encoder and a decoder of that kind; no latent code."""
    dec_name = model_cfg["decoder"]
    if enc_name is None:
        raise ValueError(f"decoder {dec_name!r} reconstructs from an observation: set model.encoder "
                         f"(one of {', '.join(sorted(ENCODERS))})")
    if c_dim <= 0:
        raise ValueError(f"model.encoder {enc_name!r} needs model.c_dim > 0, got {c_dim}")
    if z_dim != 0 or lat_name is not None or model_cfg.get("encoder_latent_kwargs"):
        raise ValueError(f"decoder {dec_name!r} has no latent code: set model.z_dim: 0 and model.encoder_latent: null")
    decoder = _build("decoder", DECODERS, dec_name, model_cfg.get("decoder_kwargs"), {"c_dim": c_dim})
    encoder = _build("encoder", ENCODERS, enc_name, model_cfg.get("encoder_kwargs"), {"c_dim": c_dim})
    return NETWORKS[kind](encoder, decoder)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def load_model(cfg: dict, checkpoint: str | Path | None, device: torch.device):
    """Rebuild the network from the hyperparameters stored in a checkpoint; map it to `device`.

    checkpoint: a file, or None for out_dir/<test.model_file> of `cfg`.
    Returns (model in eval mode on `device`, the checkpoint path).
    """
    path = Path(checkpoint) if checkpoint else Path(cfg["out_dir"]) / cfg["test"]["model_file"]
    state = load_checkpoint(path, map_location="cpu")  # GPU-trained checkpoints load on CPU-only machines
    model = build_model(state.get("model_config", cfg["model"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval(), path

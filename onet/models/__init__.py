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

import difflib
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
from onet.models.local import LocalDecoder, TriplanePointnet
from onet.models.kinds import FIELD, OUTPUT_KINDS, POINTS, TARGETS, VOXELS
from onet.models.onet import OccupancyNetwork
from onet.models.pointnet import LatentPointnet, ResnetPointnet, SimplePointnet
from onet.models.psgn import PSGN, PSGNDecoder
from onet.models.r2n2 import R2N2, R2N2Decoder
from onet.models.voxels import VoxelEncoder
from onet.utils.checkpoints import inference_weights, load_checkpoint
from onet.utils.errors import ConfigError

ENCODERS = {
    "resnet18": ResNet18Encoder,
    "pointnet_resnet": ResnetPointnet,
    "pointnet_simple": SimplePointnet,
    "voxel_simple": VoxelEncoder,
    # local features (three planes) for the `local` decoder: learns from few objects (models/local.py)
    "pointnet_triplane": TriplanePointnet,
}

DECODERS = {
    "cbn_resnet": CBNResnetDecoder,
    "batchnorm": BatchNormDecoder,
    "cbn_noresnet": CBNNoResnetDecoder,
    "simple": SimpleDecoder,
    "local": LocalDecoder,
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

# encoders whose output is feature planes (B, 3, c_dim, R, R), and the decoders that read them
# (instead of a code vector (B, c_dim)): they only fit each other
PLANE_ENCODERS = frozenset({"pointnet_triplane"})
PLANE_DECODERS = frozenset({"local"})

# The observation each encoder reads (data.input_type); a mismatch is a config error at load time.
ENCODER_INPUTS = {
    "resnet18": "img",
    "pointnet_resnet": "pointcloud",
    "pointnet_simple": "pointcloud",
    "voxel_simple": "voxels",
    "pointnet_triplane": "pointcloud",
}

MODEL_KEYS = (
    "encoder", "encoder_kwargs", "decoder", "decoder_kwargs",
    "c_dim", "z_dim", "encoder_latent", "encoder_latent_kwargs",
)

__all__ = [
    "ENCODERS", "DECODERS", "LATENT_ENCODERS", "PLANE_ENCODERS", "PLANE_DECODERS", "NETWORKS", "MODEL_KEYS", "ENCODER_INPUTS",
    "build_model", "check_model_config", "count_parameters", "load_model", "output_kind", "data_targets",
    "OccupancyNetwork", "OccupancyDecoder", "R2N2", "PSGN", "ShapeEmbedding", "PretrainedWeightsUnavailable",
    "FIELD", "VOXELS", "POINTS", "OUTPUT_KINDS",
]


def _check_kwargs(kind: str, registry: dict[str, type], name: Any, kwargs: Any,
                  fixed: dict[str, Any]) -> None:
    """Check `{kind}_kwargs` against the constructor of registry[name]; ConfigError naming the key.

    Unknown keys get the closest valid one; a value whose type differs from the
    parameter's default, or a negative count, is refused here, at config load,
    rather than deep inside the constructor mid-run.
    """
    section = f"model.{kind}_kwargs"
    if name not in registry:
        close = difflib.get_close_matches(str(name), list(registry), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ";"
        raise ConfigError(f"unknown {kind} {name!r} (model.{kind}){hint} valid choices: {', '.join(sorted(registry))}")
    params = {k: p for k, p in inspect.signature(registry[name]).parameters.items()
              if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    valid = [k for k in params if k not in fixed]
    for key, value in (kwargs or {}).items():
        if key in fixed:
            raise ConfigError(f"{section}.{key}: set {key} in the model section (model.{key}), not in {section}")
        if key not in params:
            close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.5)
            hint = f"; did you mean '{section}.{close[0]}'?" if close else ""
            raise ConfigError(f"{kind} {name!r}: unknown config key '{section}.{key}'{hint} "
                              f"(valid: {', '.join(valid)})")
        default = params[key].default
        if key == "pretrained" or default is inspect.Parameter.empty or default is None:
            continue  # pretrained takes true/false or a weights file; no default, no type to infer
        if not _same_kind(default, value):
            raise ConfigError(f"config key '{section}.{key}' must be {type(default).__name__} "
                              f"(like its default {default!r}), got {value!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise ConfigError(f"config key '{section}.{key}' must not be negative, got {value!r}")


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def output_kind(model_cfg: dict[str, Any]) -> str:
    """The output kind (onet.models.kinds) of the network a `model:` section builds, without building it."""
    name = model_cfg.get("decoder", "cbn_resnet")
    if name not in DECODERS:
        close = difflib.get_close_matches(str(name), list(DECODERS), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ";"
        raise ConfigError(f"unknown decoder {name!r} (model.decoder){hint} valid choices: {', '.join(sorted(DECODERS))}")
    # the occupancy decoders (onet.models.decoders) predict a field; the baselines say what they predict
    return getattr(DECODERS[name], "output_kind", FIELD)


def data_targets(model_cfg: dict[str, Any]) -> tuple[str, ...]:
    """Dataset fields the network trains on beyond the occupancy points (onet.models.kinds.TARGETS)."""
    return TARGETS[output_kind(model_cfg)]


def check_model_config(model_cfg: dict[str, Any], *, input_type: str | None | object = ...) -> None:
    """Validate the `model:` section (and its fit with data.input_type when given) without building it.

    Raises ConfigError naming the key: unknown component names and `*_kwargs`
    keys (with the closest valid one), kwarg types, inconsistent sizes.
    """
    unknown = sorted(set(model_cfg) - set(MODEL_KEYS))
    if unknown:
        raise ConfigError(f"unknown model config keys {unknown}; valid: {', '.join(MODEL_KEYS)}")
    c_dim = int(model_cfg.get("c_dim", 0))
    z_dim = int(model_cfg.get("z_dim", 0))
    enc_name = model_cfg.get("encoder")
    lat_name = model_cfg.get("encoder_latent")
    dec_name = model_cfg.get("decoder", "cbn_resnet")
    if output_kind(model_cfg) != FIELD:  # R2N2 / PSGN: an observation encoder and a decoder of that kind
        if enc_name is None:
            raise ConfigError(f"decoder {dec_name!r} reconstructs from an observation: set model.encoder "
                              f"(one of {', '.join(sorted(ENCODERS))})")
        if c_dim <= 0:
            raise ConfigError(f"model.encoder {enc_name!r} needs model.c_dim > 0, got {c_dim}")
        if z_dim != 0 or lat_name is not None or model_cfg.get("encoder_latent_kwargs"):
            raise ConfigError(f"decoder {dec_name!r} has no latent code: set model.z_dim: 0 and "
                              "model.encoder_latent: null")
        _check_kwargs("decoder", DECODERS, dec_name, model_cfg.get("decoder_kwargs"), {"c_dim": c_dim})
    else:
        if enc_name is None and c_dim != 0:
            raise ConfigError(f"model.encoder is null (unconditional) but model.c_dim is {c_dim}; set c_dim: 0")
        if enc_name is not None and c_dim <= 0:
            raise ConfigError(f"model.encoder {enc_name!r} needs model.c_dim > 0, got {c_dim}")
        if lat_name is not None and z_dim <= 0:
            raise ConfigError(f"model.encoder_latent {lat_name!r} needs model.z_dim > 0, got {z_dim}")
        _check_kwargs("decoder", DECODERS, dec_name, model_cfg.get("decoder_kwargs"),
                      {"z_dim": z_dim, "c_dim": c_dim})
        _check_local_pair(enc_name, dec_name, model_cfg)
    if enc_name is not None:
        _check_kwargs("encoder", ENCODERS, enc_name, model_cfg.get("encoder_kwargs"), {"c_dim": c_dim})
    elif model_cfg.get("encoder_kwargs"):
        raise ConfigError("model.encoder_kwargs given but model.encoder is null")
    if lat_name is not None:
        _check_kwargs("encoder_latent", LATENT_ENCODERS, lat_name, model_cfg.get("encoder_latent_kwargs"),
                      {"z_dim": z_dim, "c_dim": c_dim})
    elif model_cfg.get("encoder_latent_kwargs"):
        raise ConfigError("model.encoder_latent_kwargs given but model.encoder_latent is null")
    if input_type is not ...:
        wanted = ENCODER_INPUTS.get(enc_name) if enc_name is not None else None
        if enc_name is None and input_type is not None:
            raise ConfigError(f"model.encoder is null (unconditional) but data.input_type is {input_type!r}; "
                              "set data.input_type: null")
        if enc_name is not None and enc_name in ENCODER_INPUTS and wanted != input_type:
            raise ConfigError(f"model.encoder {enc_name!r} reads data.input_type {wanted!r}, "
                              f"but data.input_type is {input_type!r}")


def _check_local_pair(enc_name: Any, dec_name: Any, model_cfg: dict[str, Any]) -> None:
    """Plane decoders read feature planes, which only the plane encoders make (and only they read)."""
    plane_encoder = enc_name in PLANE_ENCODERS
    if (dec_name in PLANE_DECODERS) != plane_encoder:
        raise ConfigError(
            f"model.encoder {enc_name!r} and model.decoder {dec_name!r} do not fit: decoder "
            f"{' / '.join(sorted(PLANE_DECODERS))} reads the feature planes of {' / '.join(sorted(PLANE_ENCODERS))}, "
            "and those encoders feed only it")
    if plane_encoder:
        # each side's padding as configured, else its constructor's default
        pads = [(model_cfg.get(f"{k}_kwargs") or {}).get(
                    "padding", inspect.signature(registry[name]).parameters["padding"].default)
                for k, registry, name in (("encoder", ENCODERS, enc_name), ("decoder", DECODERS, dec_name))]
        if pads[0] != pads[1]:
            raise ConfigError(f"model.encoder_kwargs.padding {pads[0]} != model.decoder_kwargs.padding {pads[1]}: "
                              "encoder and decoder must map the box to the planes alike")


def _build(kind: str, registry: dict[str, type], name: str, kwargs: dict[str, Any] | None,
           fixed: dict[str, Any]) -> nn.Module:
    """Instantiate registry[name](**kwargs, **fixed), with errors that name the component."""
    kwargs = {**(kwargs or {}), **fixed}
    try:
        return registry[name](**kwargs)
    except (ValueError, TypeError) as e:  # sizes the constructor refuses (e.g. hidden_size 0)
        raise ConfigError(f"model.{kind} {name!r} with {kind}_kwargs {kwargs}: {e}") from None


def _build_encoder(model_cfg: dict[str, Any], c_dim: int, pretrained: bool) -> nn.Module:
    enc_name = model_cfg["encoder"]
    enc_kwargs = dict(model_cfg.get("encoder_kwargs") or {})
    if not pretrained and "pretrained" in inspect.signature(ENCODERS[enc_name]).parameters:
        enc_kwargs["pretrained"] = False
    return _build("encoder", ENCODERS, enc_name, enc_kwargs, {"c_dim": c_dim})


def build_model(model_cfg: dict[str, Any], *, pretrained: bool = True) -> nn.Module:
    """Build the network of the `model:` config section (not mutated).

    Keys (see configs/default.yaml): encoder (str | None), encoder_kwargs,
    decoder (str), decoder_kwargs, c_dim, z_dim, encoder_latent (str | None),
    encoder_latent_kwargs. c_dim / z_dim are passed to the parts that take them.
    Returns an OccupancyNetwork, R2N2 or PSGN, as the decoder's output kind says.
    pretrained=False ignores any `pretrained` encoder option: weights that a
    checkpoint is about to overwrite are never fetched or read.
    Raises ConfigError (a ValueError) for unknown keys, unknown component names,
    bad kwargs and inconsistent sizes.
    """
    check_model_config(model_cfg)
    c_dim = int(model_cfg.get("c_dim", 0))
    z_dim = int(model_cfg.get("z_dim", 0))
    enc_name = model_cfg.get("encoder")
    lat_name = model_cfg.get("encoder_latent")
    kind = output_kind(model_cfg)
    if kind != FIELD:  # R2N2 / PSGN: no latent code (check_model_config said so)
        decoder = _build("decoder", DECODERS, model_cfg["decoder"], model_cfg.get("decoder_kwargs"), {"c_dim": c_dim})
        return NETWORKS[kind](_build_encoder(model_cfg, c_dim, pretrained), decoder)
    decoder = _build("decoder", DECODERS, model_cfg.get("decoder", "cbn_resnet"),
                     model_cfg.get("decoder_kwargs"), {"z_dim": z_dim, "c_dim": c_dim})
    encoder = _build_encoder(model_cfg, c_dim, pretrained) if enc_name is not None else None
    encoder_latent = None
    if lat_name is not None:
        encoder_latent = _build("encoder_latent", LATENT_ENCODERS, lat_name,
                                model_cfg.get("encoder_latent_kwargs"), {"z_dim": z_dim, "c_dim": c_dim})
    return OccupancyNetwork(decoder, encoder=encoder, encoder_latent=encoder_latent)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def load_model(cfg: dict, checkpoint: str | Path | None, device: torch.device):
    """Rebuild the network from the hyperparameters stored in a checkpoint; map it to `device`.

    checkpoint: a file, or None for out_dir/<test.model_file> of `cfg`.
    The checkpoint's model must read the observation `cfg` feeds it
    (data.input_type); otherwise a ConfigError names the checkpoint and both
    sides. Pretrained encoder weights are never fetched: the checkpoint holds them.
    Returns (model in eval mode on `device`, the checkpoint path).
    """
    path = Path(checkpoint) if checkpoint else Path(cfg["out_dir"]) / cfg["test"]["model_file"]
    state = load_checkpoint(path, map_location="cpu")  # GPU-trained checkpoints load on CPU-only machines
    model_cfg = state.get("model_config", cfg["model"])
    if not isinstance(state, dict) or "model" not in state or not isinstance(model_cfg, dict):
        raise ConfigError(f"{path} is not an onet checkpoint (no 'model' state and 'model_config'); "
                          "train one with `onet train`")
    input_type = cfg["data"]["input_type"]
    enc = model_cfg.get("encoder")
    wanted = ENCODER_INPUTS.get(enc) if enc is not None else None
    if (enc is None) != (input_type is None) or (enc in ENCODER_INPUTS and wanted != input_type):
        trained_on = (state.get("config") or {}).get("data", {}).get("input_type", wanted)
        raise ConfigError(
            f"checkpoint {path} and the config disagree: the checkpoint's model (encoder {enc!r}) reads "
            f"{trained_on or 'no observation'} inputs, the config has data.input_type {input_type!r}; "
            "use the config the checkpoint was trained with (its out_dir/config.yaml)")
    model = build_model(model_cfg, pretrained=False)
    try:
        model.load_state_dict(inference_weights(state))
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise ConfigError(f"checkpoint {path}: its weights do not fit the model it describes ({first})") from None
    return model.to(device).eval(), path

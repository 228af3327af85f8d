"""Checkpoints of the reference Occupancy Networks code -> onet models.

The reference implementation (autonomousvision/occupancy_networks) saves
`{'model': state_dict, 'epoch_it', 'it', 'loss_val_best'}`; its published
models are the four families below. Each family's network is, function for
function, one of onet's registry models (DESIGN §5); only the parameter
layout differs:

- the reference decoders with conditional batch norm act on (B, C, T)
  features with `Conv1d(in, out, 1)` layers (weights (out, in, 1)); onet keeps
  points channels-last with `nn.Linear` (weights (out, in)). A width-1
  convolution is that linear map, so the weight only loses its last axis.
- names: `decoder.block{i}.bn_{j}.conv_gamma` is
  `decoder.blocks.{i}.norm_{j}.gamma`, the final `decoder.bn` is
  `decoder.norm_out`, the image encoder's torchvision ResNet lives under
  `encoder.features.`, the PointNet's `encoder.block_{i}` is
  `encoder.blocks.{i}` and the latent encoder's occupancy input layer `fc_0`
  is `fc_occ`.

The reference `simple` decoder (no normalisation, z added as a feature,
fully connected pre-activation ResNet blocks, ReLU) and its `simple` latent
encoder (max-pooled PointNet over points and occupancies) are exactly onet's
`simple` decoder and `pointnet_latent` encoder, so no extra model classes
are needed. Reference configs with `leaky: true` (leaky ReLU, mean pooling)
have the same keys but a different function and cannot be imported.

The mapping is derived from the onet model that the config builds, so a
checkpoint trained with other sizes (hidden size, c_dim, z_dim) imports with
a config that sets the same sizes; every key must match, nothing is dropped.
"""

from __future__ import annotations

import copy
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from onet.utils.checkpoints import CheckpointError, save_checkpoint
from onet.utils.errors import UsageError


@dataclass(frozen=True)
class Family:
    """A published model family: onet config and the reference code's config and file."""

    name: str
    onet_config: str
    reference_config: str
    published: str


FAMILIES = {
    "img": Family("img", "configs/img.yaml", "configs/img/onet.yaml", "onet_img2mesh_3-f786b04a.pt"),
    "pointcloud": Family("pointcloud", "configs/pointcloud.yaml", "configs/pointcloud/onet.yaml",
                         "onet_pcl2mesh-5c0be168.pt"),
    "voxels": Family("voxels", "configs/voxels.yaml", "configs/voxels/onet.yaml", "onet_voxel2mesh-52ee34d4.pt"),
    "unconditional": Family("unconditional", "configs/unconditional.yaml", "configs/unconditional/onet_chairs.yaml",
                            "onet_uncond_chairs-800ea1f3.pt"),
}

# (model.encoder, model.decoder) of each family's onet config
_FAMILY_OF_MODEL = {
    ("resnet18", "cbn_resnet"): "img",
    ("pointnet_resnet", "cbn_resnet"): "pointcloud",
    ("voxel_simple", "cbn_resnet"): "voxels",
    (None, "simple"): "unconditional",
}

# a key prefix that only one family's checkpoints have, to say what a mismatched file looks like
_SIGNATURES = (
    ("encoder.features.", "img"),
    ("encoder.fc_pos.", "pointcloud"),
    ("encoder.conv_in.", "voxels"),
    ("encoder_latent.", "unconditional"),
)


class ReferenceCheckpointError(UsageError):
    """The file does not match the layout the config expects (exit code 2); names the keys."""


@dataclass
class ImportResult:
    family: str
    out_path: Path
    n_tensors: int
    n_parameters: int
    iteration: int | None


def family_of(model_cfg: dict[str, Any]) -> str:
    """The reference family whose layout a config's `model:` section describes."""
    key = (model_cfg.get("encoder"), model_cfg.get("decoder", "cbn_resnet"))
    if key not in _FAMILY_OF_MODEL:
        known = "; ".join(f"{f.onet_config} ({f.name})" for f in FAMILIES.values())
        raise UsageError(
            f"model.encoder {key[0]!r} with model.decoder {key[1]!r} has no reference counterpart; "
            f"import with a config like one of: {known}"
        )
    if model_cfg.get("encoder") == "resnet18" and not (model_cfg.get("encoder_kwargs") or {}).get("normalize", True):
        raise UsageError("the reference image encoder normalises its input with ImageNet statistics: "
                         "remove model.encoder_kwargs.normalize: false")
    return _FAMILY_OF_MODEL[key]


def import_model_config(model_cfg: dict[str, Any]) -> dict[str, Any]:
    """The config's model section for an imported network: no ImageNet download for the encoder,
    since every weight comes from the checkpoint. Returns a copy."""
    model_cfg = copy.deepcopy(model_cfg)
    if model_cfg.get("encoder") == "resnet18":
        model_cfg["encoder_kwargs"] = {**(model_cfg.get("encoder_kwargs") or {}), "pretrained": False}
    return model_cfg


# onet name -> reference name, per part of the network; the second item says whether the
# reference layer is a width-1 Conv1d (its weight has a trailing axis of length 1)
def _decoder_cbn_name(rest: str) -> tuple[str, bool]:
    m = re.fullmatch(r"blocks\.(\d+)\.norm_(\d)\.(gamma|beta)\.(weight|bias)", rest)
    if m:
        return f"block{m[1]}.bn_{m[2]}.conv_{m[3]}.{m[4]}", True
    m = re.fullmatch(r"blocks\.(\d+)\.norm_(\d)\.bn\.(\w+)", rest)
    if m:
        return f"block{m[1]}.bn_{m[2]}.bn.{m[3]}", False
    m = re.fullmatch(r"blocks\.(\d+)\.(fc_\d)\.(weight|bias)", rest)
    if m:
        return f"block{m[1]}.{m[2]}.{m[3]}", True
    m = re.fullmatch(r"norm_out\.(gamma|beta)\.(weight|bias)", rest)
    if m:
        return f"bn.conv_{m[1]}.{m[2]}", True
    m = re.fullmatch(r"norm_out\.bn\.(\w+)", rest)
    if m:
        return f"bn.bn.{m[1]}", False
    if rest.startswith(("fc_p.", "fc_out.")):
        return rest, True
    if rest.startswith("fc_z."):  # nn.Linear in the reference too
        return rest, False
    raise KeyError(rest)


def _decoder_simple_name(rest: str) -> tuple[str, bool]:
    m = re.fullmatch(r"blocks\.(\d+)\.(fc_\d)\.(weight|bias)", rest)
    if m:
        return f"block{m[1]}.{m[2]}.{m[3]}", False
    if rest.startswith(("fc_p.", "fc_z.", "fc_c.", "fc_out.")):
        return rest, False
    raise KeyError(rest)


def _encoder_name(family: str, rest: str) -> str:
    if family == "img":
        return rest if rest.startswith("fc.") else f"features.{rest}"
    if family == "pointcloud":
        return re.sub(r"^blocks\.(\d+)\.", r"block_\1.", rest)
    return rest  # voxels: the same names


def reference_name(onet_key: str, family: str) -> tuple[str, bool]:
    """(reference key, is a Conv1d weight) of an onet state-dict key of a `family` model."""
    part, _, rest = onet_key.partition(".")
    try:
        if part == "decoder":
            name, conv = (_decoder_simple_name if family == "unconditional" else _decoder_cbn_name)(rest)
            return f"decoder.{name}", conv and name.endswith(".weight")
        if part == "encoder":
            return f"encoder.{_encoder_name(family, rest)}", False
        if part == "encoder_latent":
            return "encoder_latent." + ("fc_0." + rest[len("fc_occ."):] if rest.startswith("fc_occ.") else rest), False
    except KeyError:
        pass
    raise ValueError(f"onet parameter {onet_key!r} has no counterpart in the reference {family!r} layout")


def expected_layout(model: torch.nn.Module, family: str) -> dict[str, tuple[tuple[int, ...], str, bool]]:
    """{reference key: (shape, onet key, is Conv1d weight)} for every state-dict entry of `model`."""
    layout = {}
    for key, value in model.state_dict().items():
        ref, conv = reference_name(key, family)
        layout[ref] = (tuple(value.shape) + ((1,) if conv else ()), key, conv)
    return layout


def _short(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _looks_like(state: dict[str, Any]) -> str | None:
    for prefix, family in _SIGNATURES:
        if any(k.startswith(prefix) for k in state):
            return family
    return None


def convert_state_dict(state: dict[str, torch.Tensor], model: torch.nn.Module, family: str, *,
                       source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Map a reference state dict onto `model`'s keys and shapes; raise ReferenceCheckpointError on any mismatch.

    state: the reference `state_dict` ({key: tensor}). model: the onet model built from the
    family's config (only its keys, shapes and dtypes are used). Returns {onet key: tensor}.
    """
    layout = expected_layout(model, family)
    missing = sorted(k for k in layout if k not in state)
    unexpected = sorted(k for k in state if k not in layout)
    wrong = []
    for key in sorted(set(layout) & set(state)):
        value = state[key]
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else None
        if shape != layout[key][0]:
            got = "not a tensor" if shape is None else f"{shape}"
            wrong.append(f"{key} is {got}, expected {layout[key][0]}")
    if missing or unexpected or wrong:
        fam = FAMILIES[family]
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {_short(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_short(unexpected)}")
        if wrong:
            parts.append(f"{len(wrong)} keys with the wrong shape: {_short(wrong, 6)}")
        hint = ""
        seen = _looks_like(state)
        if seen is not None and seen != family:
            hint = f"; the file looks like a {seen!r} checkpoint: import it with {FAMILIES[seen].onet_config}"
        elif wrong and not missing and not unexpected:
            hint = "; set the config's model sizes (c_dim, z_dim, hidden sizes) to those the checkpoint was trained with"
        raise ReferenceCheckpointError(
            f"{source} does not match the reference {family!r} layout that the config expects "
            f"(reference {fam.reference_config}, published as {fam.published}): " + "; ".join(parts) + hint
        )
    own = model.state_dict()
    out = {}
    for ref_key, (_, key, conv) in layout.items():
        value = state[ref_key].detach()
        if conv:
            value = value.squeeze(-1)  # Conv1d(in, out, 1) weight (out, in, 1) -> Linear weight (out, in)
        out[key] = value.to(own[key].dtype).clone()
    return out


def read_reference_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state_dict, the file's other entries) of a reference checkpoint, or of a bare state dict.

    Loaded with weights_only=True: a downloaded file can hold tensors and plain values but
    cannot run code.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"reference checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged or foreign files
        raise CheckpointError(f"cannot read reference checkpoint {path}: {exc}") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        return obj["model"], {k: v for k, v in obj.items() if k != "model"}
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, {}
    top = sorted(obj)[:10] if isinstance(obj, dict) else type(obj).__name__
    raise ReferenceCheckpointError(
        f"{path} holds no reference state dict: expected a dict with a 'model' state dict "
        f"(as the reference code saves) or a plain state dict, got {top}"
    )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def import_reference_checkpoint(ref_path: str | Path, cfg: dict[str, Any], out_path: str | Path) -> ImportResult:
    """Convert a reference ONet checkpoint into an onet checkpoint that `onet generate --checkpoint` reads.

    ref_path: the reference file (e.g. onet_img2mesh_3-f786b04a.pt). cfg: a resolved onet config
    whose `model:` section describes the same network (configs/img.yaml, ...). out_path: the
    onet checkpoint to write (atomically). Raises ReferenceCheckpointError (a UsageError) when
    keys or shapes do not match, naming them and the family expected.
    """
    from onet.models import build_model  # the registry imports this module's siblings

    ref_path, out_path = Path(ref_path), Path(out_path)
    family = family_of(cfg["model"])
    state, extra = read_reference_checkpoint(ref_path)
    model_cfg = import_model_config(cfg["model"])
    model = build_model(model_cfg)
    converted = convert_state_dict(state, model, family, source=str(ref_path))
    model.load_state_dict(converted, strict=True)
    cfg = {**copy.deepcopy(cfg), "model": model_cfg}
    iteration = extra.get("it")
    iteration = int(iteration) if isinstance(iteration, (int, float)) else None
    epoch = extra.get("epoch_it")
    save_checkpoint(
        out_path, model=model.state_dict(), model_config=model_cfg, config=cfg,
        it=iteration, epoch=int(epoch) if isinstance(epoch, (int, float)) else None, best_metric=None,
        imported_from={"file": str(ref_path), "sha256": _sha256(ref_path), "family": family,
                       **{k: v for k, v in extra.items() if isinstance(v, (int, float, str))}},
    )
    n_params = sum(p.numel() for p in model.parameters())
    return ImportResult(family, out_path, len(converted), n_params, iteration)

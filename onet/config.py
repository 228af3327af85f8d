"""YAML configs: `inherit_from`, command-line overrides and validation.

Every config is merged onto `configs/default.yaml`, which lists every key onet
reads together with its default. A key that is not in the defaults is an
error naming the closest valid key; a value of the wrong type is an error
naming the key. Free-form dicts (the `*_kwargs` keys) are passed to the model
builders, which check them.
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

import yaml

from onet.utils.errors import ConfigError  # noqa: F401  (raised here, part of this module's API)
from onet.utils.io import write_text_atomic

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"

# Types of keys whose default is null (they cannot be inferred from the default).
NULLABLE_TYPES: dict[str, tuple[type, ...]] = {
    "data.classes": (list,),
    "data.points_iou_subsample": (int,),
    "model.encoder": (str,),        # null: unconditional model
    "model.encoder_latent": (str,),
    "train.max_iters": (int,),
    "train.max_epochs": (int,),
    "train.max_time": (int, float),
    "train.max_cpu_time": (int, float),
    "generation.simplify_nfaces": (int,),
    "latent_gan.vae_dir": (str,),
}
# Keys whose value is a free-form mapping handed to a builder that validates it.
FREE_FORM = {"model.encoder_kwargs", "model.decoder_kwargs", "model.encoder_latent_kwargs"}
CHOICES: dict[str, tuple[str, ...]] = {
    "device": ("auto", "cpu", "cuda"),
    "data.input_type": ("img", "pointcloud", "voxels"),
    "train.model_selection_mode": ("max", "min"),
    "train.lr_schedule": ("constant", "cosine"),
    "generation.mesh_format": ("ply", "obj", "off", "glb", "stl"),
    "latent_gan.loss": ("ns", "standard"),
    "latent_gan.reg": ("r1", "r2", "none"),
    "latent_gan.optimizer": ("rmsprop", "adam"),
}
NULL_ALLOWED_CHOICES = {"data.input_type"}


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def merge(base: dict, update: dict) -> dict:
    """Recursively merge `update` onto a copy of `base` (dicts merge, values replace)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load_chain(path: Path, seen: tuple[Path, ...]) -> dict:
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in seen + (path,))
        raise ConfigError(f"cyclic inherit_from: {chain}")
    data = _read_yaml(path)
    parent = data.pop("inherit_from", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: inherit_from must be a file path, got {parent!r}")
    parent_path = (path.parent / parent)
    if not parent_path.is_file():
        raise ConfigError(f"{path}: inherit_from file not found: {parent_path}")
    return merge(_load_chain(parent_path, seen + (path,)), data)


def load_defaults() -> dict:
    return _read_yaml(DEFAULT_CONFIG)


def parse_override(text: str) -> tuple[list[str], Any]:
    """'train.max_iters=2' -> (['train', 'max_iters'], 2); the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(cfg: dict, overrides: list[str]) -> dict:
    cfg = copy.deepcopy(cfg)
    for text in overrides:
        keys, value = parse_override(text)
        node = cfg
        for depth, key in enumerate(keys[:-1]):
            if not isinstance(node.get(key), dict):
                node[key] = {}  # unknown section: validation reports it with a suggestion
            node = node[key]
        node[keys[-1]] = value
    return cfg


def _type_name(types: tuple[type, ...]) -> str:
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a mapping"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def _check_value(key: str, value: Any, default: Any) -> Any:
    if key in FREE_FORM:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}")
        return value
    if key in CHOICES:
        if value is None and key in NULL_ALLOWED_CHOICES:
            return value
        if value not in CHOICES[key]:
            raise ConfigError(f"config key '{key}' must be one of {', '.join(CHOICES[key])}, got {value!r}")
        return value
    if default is None:
        if value is None:
            return value
        expected = NULLABLE_TYPES.get(key)
        if expected is None:
            return value
    else:
        if value is None and key in NULLABLE_TYPES:
            return value
        if value is None:
            raise ConfigError(f"config key '{key}' must not be null (default: {default!r})")
        expected = (float, int) if isinstance(default, float) else (type(default),)
    # YAML 1.1 reads 1e-4 as a string; accept numeric strings for number keys.
    if float in expected and isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) and bool not in expected:
        raise ConfigError(f"config key '{key}' must be {_type_name(expected)}, got {value!r}")
    if not isinstance(value, expected):
        raise ConfigError(f"config key '{key}' must be {_type_name(expected)}, got {value!r}")
    return value


def validate(cfg: dict, defaults: dict | None = None, *, source: str = "config") -> dict:
    """Check every key against the defaults and fill missing ones; returns a new dict."""
    defaults = load_defaults() if defaults is None else defaults

    def walk(node: dict, ref: dict, prefix: str) -> dict:
        out = {}
        for key, value in node.items():
            full = f"{prefix}{key}"
            if key not in ref:
                close = difflib.get_close_matches(str(key), [str(k) for k in ref], n=1, cutoff=0.5)
                hint = f"; did you mean '{prefix}{close[0]}'?" if close else \
                    f"; valid keys here: {', '.join(prefix + k for k in ref)}"
                raise ConfigError(f"{source}: unknown config key '{full}'{hint}")
            if isinstance(ref[key], dict) and full not in FREE_FORM:
                if not isinstance(value, dict):
                    raise ConfigError(f"{source}: config key '{full}' must be a mapping of keys, got {value!r}")
                out[key] = walk(value, ref[key], full + ".")
            else:
                try:
                    out[key] = _check_value(full, value, ref[key])
                except ConfigError as exc:
                    raise ConfigError(f"{source}: {exc}") from None
        for key, value in ref.items():
            if key not in out:
                out[key] = copy.deepcopy(value)
        return out

    return walk(cfg, defaults, "")


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Load a YAML config with inheritance, apply overrides, validate against the defaults."""
    path = Path(path)
    cfg = _load_chain(path, ())
    cfg = apply_overrides(cfg, list(overrides))
    return validate(cfg, source=str(path))


def default_config(overrides: list[str] | tuple[str, ...] = ()) -> dict:
    return validate(apply_overrides(load_defaults(), list(overrides)), source="overrides")


def save_config(cfg: dict, path: str | Path) -> None:
    """Write the resolved config as plain YAML (atomically), so a run reproduces from its folder."""
    write_text_atomic(path, yaml.safe_dump(cfg, sort_keys=False))

"""YAML configs: `inherit_from`, command-line overrides and validation.

Every config is merged onto `configs/default.yaml`, which lists every key onet
reads together with its default. This module is the one schema: at load time
a key that is not in the defaults is an error naming the closest valid key; a
value of the wrong type, outside its range (RANGES), not among its choices
(CHOICES) or inconsistent with another key (`_check_across`) is an error
naming the key. The `*_kwargs` mappings are checked against the constructor
of the component they configure (`onet.models.check_model_config`). Every
such error is a `ConfigError` (exit code 2).

Adding a key: (1) put it with its default and a one-line comment in its
section of configs/default.yaml (the type is taken from the default);
(2) if the default is null, give its type in NULLABLE_TYPES; (3) a size,
count, interval or limit gets a Range in RANGES (AT_LEAST_1, NON_NEGATIVE,
POSITIVE or Range(low, high)); a string with fixed values gets CHOICES; a
string that may be empty goes in EMPTY_STRING_ALLOWED; a number that may also
be "auto" goes in AUTO_ALLOWED; (4) a rule tying it to
other keys goes in `_check_across`. tests/test_config.py checks that every
RANGES/CHOICES key exists in the defaults.

Where the defaults live: a source checkout reads the top-level `configs/`
folder; an installed wheel carries a copy of it inside the package
(`onet/configs`, built by setup.py), so every verb runs from any folder.
A relative config path that does not exist is also looked up there, so
`onet train configs/demo.yaml` works after `pip install onet-*.whl`.
"""

from __future__ import annotations

import copy
import difflib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from onet.utils.errors import ConfigError  # noqa: F401  (raised here, part of this module's API)
from onet.utils.io import write_text_atomic



def _config_dir() -> Path:
    packaged = Path(__file__).resolve().parent / "configs"  # wheels: copied in by setup.py
    return packaged if (packaged / "default.yaml").is_file() else Path(__file__).resolve().parent.parent / "configs"


CONFIG_DIR = _config_dir()
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
    "train.min_iters": (int,),
    "train.cpu_threads": (int,),  # null: torch's count; also "auto" (AUTO_ALLOWED)
    "generation.cpu_threads": (int,),
    "generation.simplify_nfaces": (int,),
    "latent_gan.vae_dir": (str,),
    "train.num_workers": (int,),  # null: chosen by device (onet.utils.device.loader_settings)
    "train.pin_memory": (bool,),
    "generation.marching_cubes_workers": (int,),
    "evaluation.workers": (int,),  # null: one per usable CPU (onet.evaluation.evaluate.resolve_workers)
}
# Keys whose value is a free-form mapping handed to a builder that validates it.
FREE_FORM = {"model.encoder_kwargs", "model.decoder_kwargs", "model.encoder_latent_kwargs"}
CHOICES: dict[str, tuple[str, ...]] = {
    "device": ("auto", "cpu", "cuda"),
    "data.input_type": ("img", "pointcloud", "voxels"),
    "train.model_selection_mode": ("max", "min"),
    "train.precision": ("fp32", "bf16", "auto"),  # onet.utils.precision
    "generation.precision": ("fp32", "bf16", "auto"),
    "train.lr_schedule": ("constant", "cosine"),
    # the val_* numbers validation computes (which ones a model measures: _check_across)
    "train.model_selection_metric": ("chamfer", "iou", "loss"),
    "generation.mesh_format": ("ply", "obj", "off", "glb", "stl"),
    "latent_gan.loss": ("ns", "standard"),
    "latent_gan.reg": ("r1", "r2", "none"),
    "latent_gan.optimizer": ("rmsprop", "adam"),
    "generation.marching_cubes": ("auto", "skimage", "torch", "warp"),
    "evaluation.sweep_rule": ("one_se", "max"),  # onet.evaluation.sweep.choose_threshold
}
NULL_ALLOWED_CHOICES = {"data.input_type"}
# Number (and boolean) keys that also take the string "auto" (resolved where the key is used).
AUTO_ALLOWED = {"train.cpu_processes",  # onet.training.launch.resolve_cpu_processes
                "train.cpu_threads", "generation.cpu_threads",  # onet.utils.threads.thread_governor
                "train.compile"}  # a boolean, or auto: onet.training.compiled.resolve_compile


@dataclass(frozen=True)
class Range:
    """Allowed numeric interval; a bound of None is open-ended."""

    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True

    def contains(self, v: float) -> bool:
        if self.low is not None and (v < self.low or (v == self.low and not self.low_inclusive)):
            return False
        return not (self.high is not None and (v > self.high or (v == self.high and not self.high_inclusive)))

    def describe(self) -> str:
        lo = None if self.low is None else f"{'>=' if self.low_inclusive else '>'} {self.low:g}"
        hi = None if self.high is None else f"{'<=' if self.high_inclusive else '<'} {self.high:g}"
        return " and ".join(x for x in (lo, hi) if x)


AT_LEAST_1, NON_NEGATIVE, POSITIVE = Range(1), Range(0), Range(0, low_inclusive=False)
# Sizes, counts, intervals and limits: a zero or negative value is a config error at load time,
# never a silent "batch of 2" or an "integer modulo by zero" mid-run. Lists: every element.
RANGES: dict[str, Range] = {
    "seed": NON_NEGATIVE,
    "data.points_subsample": AT_LEAST_1,
    "data.points_iou_subsample": AT_LEAST_1,
    "data.points_jitter": NON_NEGATIVE,
    "data.points_near_surface_ratio": Range(0, 1),
    "data.augment_scale": Range(0, 1, high_inclusive=False),
    "data.img_size": AT_LEAST_1,
    "data.pointcloud_n": AT_LEAST_1,
    "data.pointcloud_noise": NON_NEGATIVE,
    "model.c_dim": NON_NEGATIVE,
    "model.z_dim": NON_NEGATIVE,
    "train.batch_size": AT_LEAST_1,
    "train.val_batch_size": AT_LEAST_1,
    "train.lr": POSITIVE,
    "train.ema_decay": Range(0, 1, high_inclusive=False),
    "train.max_iters": AT_LEAST_1,
    "train.max_epochs": AT_LEAST_1,
    "train.max_time": POSITIVE,
    "train.max_cpu_time": POSITIVE,
    "train.min_iters": AT_LEAST_1,
    "train.validate_every": AT_LEAST_1,
    "train.checkpoint_every": AT_LEAST_1,
    "train.print_every": AT_LEAST_1,
    "train.num_workers": NON_NEGATIVE,
    "train.cpu_processes": AT_LEAST_1,
    "train.cpu_threads": AT_LEAST_1,
    "train.model_selection_tolerance": NON_NEGATIVE,
    "train.val_points_chunk": AT_LEAST_1,
    "test.threshold": Range(0, 1, low_inclusive=False, high_inclusive=False),
    "generation.resolution_0": Range(2),
    "generation.upsampling_steps": NON_NEGATIVE,
    "generation.logit_margin": NON_NEGATIVE,
    "generation.batch_size": AT_LEAST_1,
    "generation.cpu_threads": AT_LEAST_1,
    "generation.points_chunk": AT_LEAST_1,
    "generation.marching_cubes_workers": NON_NEGATIVE,
    "generation.simplify_nfaces": Range(4),
    "generation.refinement_step": NON_NEGATIVE,
    "evaluation.n_points": AT_LEAST_1,
    "evaluation.fscore_thresholds": POSITIVE,
    "evaluation.seed": NON_NEGATIVE,
    "evaluation.workers": AT_LEAST_1,
    "latent_gan.noise_dim": AT_LEAST_1,
    "latent_gan.hidden_size": AT_LEAST_1,
    "latent_gan.n_layers": AT_LEAST_1,
    "latent_gan.gamma": NON_NEGATIVE,
    "latent_gan.ema_decay": Range(0, 1, high_inclusive=False),
}
# Element types of list keys (others take theirs from the default's first element).
LIST_ITEM_TYPES: dict[str, tuple[type, ...]] = {"data.classes": (str,)}
# Lists that must not be empty (an empty data.classes would silently mean "every class"),
# and lists whose entries must differ (a class given twice would be trained on twice as often).
NON_EMPTY_LISTS = {"data.classes", "evaluation.fscore_thresholds"}
UNIQUE_LISTS = {"data.classes", "evaluation.fscore_thresholds"}
# String keys naming one folder inside another (no path separators, no '..').
PLAIN_NAMES = {"data.classes", "data.img_folder"}
# String keys that may be empty (none so far): every other string names a path, file or folder.
EMPTY_STRING_ALLOWED: set[str] = set()


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file (byte {exc.start}: {exc.reason}); "
                          "save the config as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
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
        shipped = shipped_config(parent)
        if shipped is None:
            raise ConfigError(f"{path}: inherit_from file not found: {parent_path}")
        parent_path = shipped
    return merge(_load_chain(parent_path, seen + (path,)), data)


def shipped_config(name: str | Path) -> Path | None:
    """A relative config path looked up among the configs onet ships ('configs/demo.yaml', 'demo.yaml',
    'ablations/img_no_cbn.yaml'); None when it is not one of them."""
    name = Path(name)
    if name.is_absolute():
        return None
    parts = name.parts[1:] if name.parts[:1] == ("configs",) else name.parts
    if not parts or ".." in parts:
        return None
    candidate = CONFIG_DIR.joinpath(*parts)
    return candidate if candidate.is_file() else None


def resolve_config_path(path: str | Path) -> Path:
    """The config file a command line names: the path as given, else the shipped config of that name."""
    path = Path(path)
    if path.is_file():
        return path
    return shipped_config(path) or path


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
    value = _check_type(key, value, default)
    if value is None:
        return value
    if isinstance(value, list):
        if not value and key in NON_EMPTY_LISTS:
            hint = " (null means every category)" if key == "data.classes" else ""
            raise ConfigError(f"config key '{key}' must not be an empty list{hint}")
        item_types = LIST_ITEM_TYPES.get(key) or (
            ((float, int) if isinstance(default[0], float) else (type(default[0]),)) if default else None)
        for i, item in enumerate(value):
            if item_types is not None and (not isinstance(item, item_types) or isinstance(item, bool)):
                raise ConfigError(f"config key '{key}' item {i} must be {_type_name(item_types)}, got {item!r}")
            _check_scalar(f"{key}[{i}]", key, item)
        if key in UNIQUE_LISTS:
            twice = sorted({str(v) for i, v in enumerate(value) if v in value[:i]})
            if twice:
                raise ConfigError(f"config key '{key}' lists {', '.join(twice)} more than once")
        return value
    return _check_scalar(key, key, value)


def _check_scalar(name: str, key: str, value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"config key '{name}' must be a finite number, got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key in RANGES:
        if not RANGES[key].contains(value):
            raise ConfigError(f"config key '{name}' must be {RANGES[key].describe()}, got {value!r}")
    if isinstance(value, str) and not value.strip() and key not in EMPTY_STRING_ALLOWED:
        raise ConfigError(f"config key '{name}' must not be empty")
    if isinstance(value, str) and key in PLAIN_NAMES and ("/" in value or "\\" in value or value in (".", "..")):
        raise ConfigError(f"config key '{name}' must be a plain folder or file name, got {value!r}")
    return value


def _check_type(key: str, value: Any, default: Any) -> Any:
    if key in FREE_FORM:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}")
        return value
    if key in AUTO_ALLOWED and value == "auto":
        return value
    if key in AUTO_ALLOWED and default == "auto":
        default = 1  # a count whose default is "auto": its other values are integers
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
    allowed = _type_name(expected) + (" or auto" if key in AUTO_ALLOWED else "")
    if isinstance(value, bool) and bool not in expected:
        raise ConfigError(f"config key '{key}' must be {allowed}, got {value!r}")
    if not isinstance(value, expected):
        raise ConfigError(f"config key '{key}' must be {allowed}, got {value!r}")
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

    out = walk(cfg, defaults, "")
    try:
        _check_across(out)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return out


def _check_across(cfg: dict) -> None:
    """Checks that involve more than one key (each names the keys involved)."""
    train, data, gan = cfg.get("train", {}), cfg.get("data", {}), cfg.get("latent_gan", {})
    if gan.get("reg", "none") != "none" and gan.get("gamma") == 0:
        raise ConfigError(f"latent_gan.gamma: 0 with latent_gan.reg={gan['reg']} is no penalty; "
                          "set latent_gan.reg=none for the ablation, or gamma > 0")
    if train.get("lr_schedule") == "cosine" and train.get("max_iters", 0) is None \
            and train.get("max_cpu_time") is None:
        raise ConfigError("train.lr_schedule=cosine needs train.max_iters or train.max_cpu_time "
                          "(the horizon of the decay)")
    low, high = train.get("min_iters"), train.get("max_iters")
    if low is not None and high is not None and low > high:
        raise ConfigError(f"train.min_iters ({low}) is more than train.max_iters ({high}): "
                          "no time limit could ever stop the run between them")
    if "model" in cfg and "input_type" in data:
        from onet.models import NETWORKS, check_model_config, output_kind  # the registry knows each component
        check_model_config(cfg["model"], input_type=data["input_type"])
        kind, metric = output_kind(cfg["model"]), train.get("model_selection_metric")
        measured = NETWORKS[kind].val_metrics
        if metric is not None and metric not in measured:
            raise ConfigError(f"train.model_selection_metric {metric!r} is not measured for a {kind} model; "
                              f"choose one of {', '.join(measured)}")


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """Load a YAML config with inheritance, apply overrides, validate against the defaults.

    A relative `path` that does not exist is looked up among the shipped configs
    (`resolve_config_path`), so installed copies of onet find `configs/demo.yaml`.
    """
    path = resolve_config_path(path)
    cfg = _as_run_folder(path, _load_chain(path, ()))
    cfg = apply_overrides(cfg, list(overrides))
    return validate(cfg, source=str(path))


# what `onet train` leaves beside the config.yaml it writes into out_dir
RUN_CHECKPOINTS = ("model.pt", "model_best.pt")
# keys of a run's config that name files outside out_dir, relative to the directory it trained in
RUN_PATH_KEYS = (("data", "path"), ("latent_gan", "vae_dir"))


def _as_run_folder(path: Path, cfg: dict) -> dict:
    """A run folder's own config.yaml (beside its checkpoints) means that folder, from any
    current directory and after the folder was copied or moved: its out_dir, relative to the
    directory training ran in or naming the folder's old place, becomes the folder. Relative
    paths of the run (data.path, latent_gan.vae_dir) are then resolved against the directory
    training ran in, where out_dir's own relative path tells it (the folder's path ends with it).
    Overrides (out_dir=...) still win."""
    folder = path.resolve().parent
    out = cfg.get("out_dir")
    if path.name != "config.yaml" or not isinstance(out, str) or \
            not any((folder / name).is_file() for name in RUN_CHECKPOINTS) or Path(out).resolve() == folder:
        return cfg
    cfg = merge(cfg, {"out_dir": str(folder)})
    written = Path(os.path.normpath(out))
    if not written.is_absolute() and ".." not in written.parts and folder.parts[-len(written.parts):] == written.parts:
        ran_in = Path(*folder.parts[:-len(written.parts)])
        for section, key in RUN_PATH_KEYS:
            values = cfg.get(section)
            value = values.get(key) if isinstance(values, dict) else None
            if isinstance(value, str) and value and not Path(value).is_absolute():
                values[key] = str(ran_in / value)
    return cfg


def default_config(overrides: list[str] | tuple[str, ...] = ()) -> dict:
    return validate(apply_overrides(load_defaults(), list(overrides)), source="overrides")


def save_config(cfg: dict, path: str | Path) -> None:
    """Write the resolved config as plain YAML (atomically), so a run reproduces from its folder."""
    write_text_atomic(path, yaml.safe_dump(cfg, sort_keys=False))

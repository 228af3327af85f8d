"""Bad configs at the command line: exit code 2, one line naming the file and the key, nothing written.

tests/test_config.py checks the same errors at the library level (load_config).
"""

from __future__ import annotations

import pytest
import yaml

from onet.config import CONFIG_DIR

from .helpers import assert_one_clear_error, run_cli


def _write(path, data):
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def _base(tmp_path) -> dict:
    """A config inheriting the shipped demo config, writing into tmp_path/out."""
    return {"inherit_from": str(CONFIG_DIR / "demo.yaml"), "out_dir": str(tmp_path / "out")}


# case -> (config file contents given tmp_path, overrides, fragments the error line must hold)
CASES = {
    "unknown_top_key": (lambda t: {**_base(t), "trian": {"max_iters": 2}}, [],
                        ["cfg.yaml", "unknown config key 'trian'", "did you mean 'train'"]),
    "mistyped_nested_key": (lambda t: {**_base(t), "train": {"max_iter": 2}}, [],
                            ["cfg.yaml", "'train.max_iter'", "did you mean 'train.max_iters'"]),
    "mistyped_override": (lambda t: _base(t), ["generation.resolution=64"],
                          ["'generation.resolution'", "did you mean 'generation.resolution_0'"]),
    "wrong_type_int": (lambda t: {**_base(t), "train": {"batch_size": "big"}}, [],
                       ["cfg.yaml", "'train.batch_size' must be an integer", "'big'"]),
    "wrong_type_bool": (lambda t: {**_base(t), "data": {"skip_bad": "maybe"}}, [],
                        ["cfg.yaml", "'data.skip_bad' must be true/false"]),
    "wrong_type_section": (lambda t: {**_base(t), "model": 3}, [],
                           ["cfg.yaml", "'model' must be a mapping"]),
    "wrong_choice": (lambda t: _base(t), ["data.input_type=mesh"],
                     ["'data.input_type' must be one of", "'mesh'"]),
    "missing_inherit_from": (lambda t: {"inherit_from": "nope.yaml"}, [],
                             ["cfg.yaml", "inherit_from file not found", "nope.yaml"]),
    "invalid_yaml": (lambda t: "train: [unclosed\n", [], ["cfg.yaml", "invalid YAML"]),
    "top_level_not_mapping": (lambda t: "- a\n- b\n", [], ["cfg.yaml", "must be a mapping"]),
}


@pytest.mark.parametrize("verb", ["train", "generate"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_exits_2_naming_file_and_key(case, verb, tmp_path):
    content, overrides, fragments = CASES[case]
    cfg = _write(tmp_path / "cfg.yaml", content(tmp_path))
    res = run_cli(verb, cfg, *overrides, "--no-progress")
    assert_one_clear_error(res, 2, *fragments)
    assert not (tmp_path / "out").exists(), "a config error must be caught before anything is written"


@pytest.mark.parametrize("verb", ["train", "generate"])
def test_cyclic_inheritance_shows_the_chain(verb, tmp_path):
    _write(tmp_path / "a.yaml", {"inherit_from": "b.yaml"})
    _write(tmp_path / "b.yaml", {"inherit_from": "c.yaml"})
    _write(tmp_path / "c.yaml", {"inherit_from": "a.yaml"})
    line = assert_one_clear_error(run_cli(verb, tmp_path / "a.yaml"), 2, "cyclic inherit_from")
    assert line.index("a.yaml") < line.index("b.yaml") < line.index("c.yaml")


def test_missing_config_file_exits_2(tmp_path):
    assert_one_clear_error(run_cli("train", tmp_path / "nowhere.yaml"), 2, "config file not found", "nowhere.yaml")


def test_debug_shows_the_traceback_for_developers(tmp_path):
    cfg = _write(tmp_path / "cfg.yaml", {**_base(tmp_path), "trian": {}})
    res = run_cli("train", cfg, "--debug")
    assert res.code == 2 and "Traceback" in res.err


# --------------------------------------------------------------------------- issue 12: one schema with ranges


def _outside(key: str):
    """A value just outside the range of `key` (onet.config.RANGES), of the key's own type."""
    from onet.config import RANGES, load_defaults
    rng = RANGES[key]
    section, _, leaf = key.rpartition(".")
    default = load_defaults()
    for part in filter(None, section.split(".")):
        default = default[part]
    default = default[leaf]
    integer = isinstance(default, int) or key in ("train.max_iters", "train.max_epochs",
                                                  "data.points_iou_subsample", "generation.simplify_nfaces")
    if rng.low is not None:
        bad = rng.low - 1 if rng.low_inclusive else rng.low
    else:
        bad = rng.high + 1 if rng.high_inclusive else rng.high
    bad = int(bad) if integer else float(bad)
    return f"[{bad}]" if isinstance(default, list) else bad


def _safe(tmp_path) -> dict:
    """_base, on a dataset path that does not exist: a value the schema let through fails fast."""
    return {**_base(tmp_path), "data": {"path": str(tmp_path / "no_data")}}


def _range_keys():
    from onet.config import RANGES
    return sorted(RANGES)


@pytest.mark.parametrize("key", _range_keys())
def test_every_ranged_key_refuses_a_value_outside_its_range_at_load(key, tmp_path):
    """Zero or negative sizes, intervals and limits: exit 2 naming the key, before anything is written."""
    value = _outside(key)
    res = run_cli("train", _write(tmp_path / "cfg.yaml", _safe(tmp_path)), f"{key}={value}", "--no-progress")
    assert_one_clear_error(res, 2, f"'{key}", "must be")
    assert not (tmp_path / "out").exists()


MORE_CASES = {
    "kwargs_did_you_mean": (["model.encoder_kwargs={widht: 8}"],
                            ["'model.encoder_kwargs.widht'", "did you mean 'model.encoder_kwargs.width'"]),
    "decoder_kwargs_did_you_mean": (["model.decoder_kwargs={hidden_dim: 8}"],
                                    ["'model.decoder_kwargs.hidden_dim'", "did you mean 'model.decoder_kwargs.hidden_size'"]),
    "kwargs_wrong_type": (["model.decoder_kwargs={n_blocks: two}"], ["'model.decoder_kwargs.n_blocks' must be int"]),
    "kwargs_negative": (["model.decoder_kwargs={n_blocks: -1}"], ["'model.decoder_kwargs.n_blocks' must not be negative"]),
    "unknown_encoder": (["model.encoder=resnet19"], ["unknown encoder 'resnet19'", "did you mean 'resnet18'"]),
    "selection_metric": (["train.model_selection_metric=chamfer"],
                         ["train.model_selection_metric 'chamfer' is not measured for a field model", "loss, iou"]),
    "selection_metric_unknown": (["train.model_selection_metric=f1"],
                                 ["'train.model_selection_metric' must be one of chamfer, iou, loss"]),
    "empty_classes": (["data.classes=[]"], ["'data.classes' must not be an empty list", "null means every category"]),
    "class_not_a_string": (["data.classes=[1, 2]"], ["'data.classes' item 0 must be a string"]),
    "class_twice": (["data.classes=[mug, table, mug]"], ["'data.classes' lists mug more than once"]),
    "class_with_path": (["data.classes=[../mug]"], ["'data.classes[0]' must be a plain folder or file name"]),
    "nan_number": (["train.lr=.nan"], ["'train.lr' must be a finite number"]),
    "inf_limit": (["train.max_time=.inf"], ["'train.max_time' must be a finite number"]),
    "empty_path": (["data.path="], ["'data.path' must not be null"]),
    "blank_out_dir": (["out_dir=' '"], ["'out_dir' must not be empty"]),
    "fscore_threshold_type": (["evaluation.fscore_thresholds=[a]"], ["'evaluation.fscore_thresholds' item 0 must be a number"]),
    "encoder_reads_other_input": (["data.input_type=voxels"], ["model.encoder 'resnet18' reads data.input_type 'img'"]),
    "cosine_without_horizon": (["train.max_iters=null"], ["train.lr_schedule=cosine needs train.max_iters"]),
}


@pytest.mark.parametrize("case", sorted(MORE_CASES))
def test_schema_cases_exit_2_naming_the_key(case, tmp_path):
    overrides, fragments = MORE_CASES[case]
    res = run_cli("train", _write(tmp_path / "cfg.yaml", _safe(tmp_path)), *overrides, "--no-progress")
    assert_one_clear_error(res, 2, *fragments)
    assert not (tmp_path / "out").exists()


def test_config_that_is_not_utf8_exits_2_naming_the_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("# réglages\nseed: 1\n".encode("latin-1"))
    assert_one_clear_error(run_cli("train", path), 2, "latin1.yaml", "not a UTF-8 text file")


def test_a_key_given_twice_exits_2(tmp_path):
    path = _write(tmp_path / "twice.yaml", "train:\n  batch_size: 4\n  batch_size: 8\n")
    assert_one_clear_error(run_cli("train", path), 2, "twice.yaml", "'batch_size' is given twice")

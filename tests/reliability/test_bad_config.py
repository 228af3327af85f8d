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

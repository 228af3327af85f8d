import pytest
import yaml

from onet.config import CONFIG_DIR, ConfigError, load_config, save_config, validate, load_defaults


def write(path, data):
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_every_shipped_config_loads():
    paths = sorted(CONFIG_DIR.rglob("*.yaml"))
    assert len(paths) >= 6
    for path in paths:
        cfg = load_config(path)
        assert set(cfg) == set(load_defaults())


def test_inherit_from_is_relative_to_the_file(tmp_path):
    sub = tmp_path / "sub"
    sub.mkdir()
    write(tmp_path / "base.yaml", {"inherit_from": str(CONFIG_DIR / "default.yaml"), "train": {"batch_size": 7}})
    write(sub / "child.yaml", {"inherit_from": "../base.yaml", "train": {"lr": 0.5}})
    cfg = load_config(sub / "child.yaml")
    assert cfg["train"]["batch_size"] == 7 and cfg["train"]["lr"] == 0.5
    assert cfg["train"]["print_every"] == load_defaults()["train"]["print_every"]


def test_overrides_are_parsed_as_yaml():
    cfg = load_config(CONFIG_DIR / "demo.yaml", ["train.max_iters=2", "out_dir=/tmp/x", "data.classes=[a, b]",
                                                 "train.lr=1e-3"])
    assert cfg["train"]["max_iters"] == 2
    assert cfg["out_dir"] == "/tmp/x"
    assert cfg["data"]["classes"] == ["a", "b"]
    assert cfg["train"]["lr"] == pytest.approx(1e-3)


def test_unknown_key_names_the_closest_valid_key():
    with pytest.raises(ConfigError, match=r"unknown config key 'trian'.*did you mean 'train'"):
        load_config(CONFIG_DIR / "demo.yaml", ["trian.max_iters=2"])
    with pytest.raises(ConfigError, match=r"'train.max_iter'.*did you mean 'train.max_iters'"):
        load_config(CONFIG_DIR / "demo.yaml", ["train.max_iter=2"])


def test_wrong_type_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"'train.batch_size' must be an integer"):
        load_config(CONFIG_DIR / "demo.yaml", ["train.batch_size=big"])
    with pytest.raises(ConfigError, match=r"'train.amp' must be true/false"):
        load_config(CONFIG_DIR / "demo.yaml", ["train.amp=3"])
    with pytest.raises(ConfigError, match=r"'data.input_type' must be one of"):
        load_config(CONFIG_DIR / "demo.yaml", ["data.input_type=mesh"])
    with pytest.raises(ConfigError, match=r"'train' must be a mapping"):
        load_config(CONFIG_DIR / "demo.yaml", ["train=3"])


def test_missing_and_cyclic_inheritance(tmp_path):
    write(tmp_path / "a.yaml", {"inherit_from": "nope.yaml"})
    with pytest.raises(ConfigError, match="inherit_from file not found.*nope.yaml"):
        load_config(tmp_path / "a.yaml")
    write(tmp_path / "b.yaml", {"inherit_from": "c.yaml"})
    write(tmp_path / "c.yaml", {"inherit_from": "b.yaml"})
    with pytest.raises(ConfigError, match="cyclic inherit_from"):
        load_config(tmp_path / "b.yaml")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    write(tmp_path / "bad.yaml", "train: [unclosed")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(tmp_path / "bad.yaml")


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(CONFIG_DIR / "img.yaml", ["train.max_iters=5"])
    save_config(cfg, tmp_path / "config.yaml")
    assert validate(yaml.safe_load((tmp_path / "config.yaml").read_text())) == cfg


def test_every_default_key_is_read_by_the_code():
    """No key is read and ignored: each leaf key of default.yaml appears in the package source."""
    import pathlib
    src = "\n".join(p.read_text() for p in pathlib.Path(CONFIG_DIR.parent / "onet").rglob("*.py"))

    def leaves(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict) and not k.endswith("_kwargs"):
                yield from leaves(v, prefix + k + ".")
            else:
                yield prefix + k, k

    unused = [full for full, key in leaves(load_defaults()) if f'"{key}"' not in src and f"'{key}'" not in src
              and f"{key}:" not in src and f".{key}" not in src]
    assert not unused, f"config keys never read: {unused}"


def test_every_schema_entry_names_a_key_of_the_defaults():
    """RANGES, CHOICES, NULLABLE_TYPES ... may only name keys of configs/default.yaml (a typo there checks nothing)."""
    from onet import config

    def leaves(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict) and f"{prefix}{k}" not in config.FREE_FORM:
                yield from leaves(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}"
    keys = set(leaves(load_defaults()))
    tables = {"RANGES": config.RANGES, "CHOICES": config.CHOICES, "NULLABLE_TYPES": config.NULLABLE_TYPES,
              "NULL_ALLOWED_CHOICES": config.NULL_ALLOWED_CHOICES, "LIST_ITEM_TYPES": config.LIST_ITEM_TYPES,
              "NON_EMPTY_LISTS": config.NON_EMPTY_LISTS, "UNIQUE_LISTS": config.UNIQUE_LISTS,
              "PLAIN_NAMES": config.PLAIN_NAMES, "EMPTY_STRING_ALLOWED": config.EMPTY_STRING_ALLOWED,
              "FREE_FORM": config.FREE_FORM}
    unknown = {name: sorted(set(table) - keys) for name, table in tables.items() if set(table) - keys}
    assert not unknown, f"schema entries for keys that configs/default.yaml does not have: {unknown}"


def _run_folder(root, out_dir="runs/x", data_path="data/ds", checkpoint=True):
    """What `onet train` leaves in out_dir when it ran in `root`: config.yaml beside its checkpoints."""
    folder = root / "runs" / "x"
    folder.mkdir(parents=True)
    cfg = load_config(CONFIG_DIR / "demo.yaml", [f"out_dir={out_dir}", f"data.path={data_path}"])
    save_config(cfg, folder / "config.yaml")
    if checkpoint:
        (folder / "model.pt").write_bytes(b"")
    return folder


def test_a_run_folders_config_means_that_folder_from_any_directory(tmp_path, monkeypatch):
    folder = _run_folder(tmp_path / "project")
    monkeypatch.chdir(tmp_path)  # not where training ran
    cfg = load_config(folder / "config.yaml")
    assert cfg["out_dir"] == str(folder.resolve())
    assert cfg["data"]["path"] == str((tmp_path / "project" / "data" / "ds").resolve())
    assert load_config(folder / "config.yaml", ["out_dir=elsewhere"])["out_dir"] == "elsewhere"  # overrides win
    monkeypatch.chdir(tmp_path / "project")  # where training ran: the file as written
    cfg = load_config("runs/x/config.yaml")
    assert (cfg["out_dir"], cfg["data"]["path"]) == ("runs/x", "data/ds")


def test_a_moved_run_folder_keeps_its_absolute_dataset(tmp_path):
    folder = _run_folder(tmp_path / "moved", out_dir=str(tmp_path / "cluster" / "runs" / "x"),
                         data_path=str(tmp_path / "datasets" / "ds"))
    cfg = load_config(folder / "config.yaml")
    assert cfg["out_dir"] == str(folder.resolve()) and cfg["data"]["path"] == str(tmp_path / "datasets" / "ds")


def test_only_a_run_folders_own_config_is_reinterpreted(tmp_path, monkeypatch):
    folder = _run_folder(tmp_path / "project", checkpoint=False)  # no checkpoint: not (yet) a run folder
    monkeypatch.chdir(tmp_path)
    cfg = load_config(folder / "config.yaml")
    assert (cfg["out_dir"], cfg["data"]["path"]) == ("runs/x", "data/ds")
    (folder / "model.pt").write_bytes(b"")
    (folder / "finetune.yaml").write_text((folder / "config.yaml").read_text())  # another file beside it
    assert load_config(folder / "finetune.yaml")["out_dir"] == "runs/x"

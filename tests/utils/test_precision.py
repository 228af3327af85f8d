"""train.precision / generation.precision: resolving auto, recording it, rejecting bad values."""

import subprocess
import sys

import pytest
import torch
import yaml

from onet.config import ConfigError, load_config, CONFIG_DIR
from onet.utils import precision

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
flags\t\t: fpu sse avx2 avx512f {extra}
bogomips\t: 5192.26

processor\t: 1
flags\t\t: fpu something_else
"""


def test_cpu_flags_reads_the_first_cpu(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO.format(extra="avx512_bf16"))
    assert precision.cpu_flags(path) == {"fpu", "sse", "avx2", "avx512f", "avx512_bf16"}
    assert precision.cpu_flags(tmp_path / "missing") == set()


@pytest.mark.parametrize("flags, expected", [
    ({"avx2", "avx512f"}, "fp32"),
    ({"avx2", "avx512f", "avx512_bf16"}, "bf16"),
    ({"avx512f", "amx_bf16", "amx_tile"}, "bf16"),
    (set(), "fp32"),
])
def test_auto_follows_the_cpu_flags(monkeypatch, flags, expected):
    monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
    value, why = precision.resolve_precision("auto", torch.device("cpu"), key="train.precision")
    assert value == expected
    assert why.startswith("train.precision=auto")
    # explicit values are kept whatever the CPU; bf16 where it is emulated comes with a warning
    value, why = precision.resolve_precision("bf16", torch.device("cpu"), key="train.precision")
    assert value == "bf16"
    assert ("WARNING" in why and "emulated" in why) == (expected == "fp32")
    assert (precision.slow_bf16(torch.device("cpu")) is None) == (expected == "bf16")
    assert precision.resolve_precision("fp32", torch.device("cpu"))[0] == "fp32"


def test_bad_values_are_rejected():
    with pytest.raises(ValueError, match="train.precision"):
        precision.resolve_precision("fp16", torch.device("cpu"), key="train.precision")
    for key in ("train.precision", "generation.precision"):
        with pytest.raises(ConfigError, match=key):
            load_config(CONFIG_DIR / "demo.yaml", [f"{key}=half"])


def test_bad_value_exits_2_naming_the_key(tmp_path):
    for key in ("train.precision", "generation.precision"):
        res = subprocess.run([sys.executable, "-m", "onet", "train", "configs/demo.yaml", f"out_dir={tmp_path}",
                              f"{key}=fp8"], capture_output=True, text=True, timeout=120)
        assert res.returncode == 2, res.stderr
        assert key in res.stderr and "Traceback" not in res.stderr


def test_run_folders_record_the_resolved_precision(tiny_cfg, monkeypatch):
    """auto on a CPU without bf16 instructions trains and generates in fp32, logged and written
    into the run folder's and the generation folder's config.yaml."""
    from onet.generation import generate
    from onet.training import train

    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "avx512f"})
    tiny_cfg["train"]["precision"] = "auto"
    tiny_cfg["generation"]["precision"] = "auto"
    tiny_cfg["train"]["max_iters"] = 2
    messages = []
    result = train(tiny_cfg, progress=False, log=messages.append)
    saved = yaml.safe_load((result.out_dir / "config.yaml").read_text())
    assert saved["train"]["precision"] == "fp32"
    assert any(m.startswith("training precision: fp32 (train.precision=auto") for m in messages)
    tiny_cfg["data"]["classes"] = ["mug"]
    summary = generate(tiny_cfg, progress=False, log=messages.append)
    assert yaml.safe_load((summary.out_dir / "config.yaml").read_text())["generation"]["precision"] == "fp32"
    assert any(m.startswith("generation precision: fp32") for m in messages)


def test_bf16_training_runs_and_is_recorded(tiny_cfg):
    from onet.training import train

    tiny_cfg["train"]["precision"] = "bf16"
    tiny_cfg["train"]["max_iters"] = 2
    result = train(tiny_cfg, progress=False, log=lambda *a: None)
    assert yaml.safe_load((result.out_dir / "config.yaml").read_text())["train"]["precision"] == "bf16"
    assert result.last_val is not None and 0.0 <= result.last_val["val_iou"] <= 1.0


def test_cpu_description_names_family_model_and_vector_units(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\n"
                    "model name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n"
                    "processor\t: 1\nmodel name\t: other\n")
    assert precision.cpu_description(path) == "AMD EPYC (family 25 model 17; AVX512-BF16, AVX-512, AVX2)"
    path.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse\n")
    assert precision.cpu_description(path) == "Some CPU"
    assert precision.cpu_description(tmp_path / "missing")  # still names something

"""train.compile (onet/training/compiled.py): the compiled step computes the eager step."""

from __future__ import annotations

import copy
import csv
import math
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from onet.config import CONFIG_DIR, load_config
from onet.models import build_model
from onet.training.compiled import LossModule, TrainingStep, resolve_compile


needs_compiler = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                    reason="torch.compile on a CPU needs a C++ compiler")


def test_resolve_compile():
    cpu = torch.device("cpu")
    assert resolve_compile("auto", cpu)[0] is False and "off on cpu" in resolve_compile("auto", cpu)[1]
    assert resolve_compile("auto", torch.device("cuda"))[0] is True
    assert resolve_compile(True, cpu) == (True, "train.compile=true")
    assert resolve_compile(False, cpu) == (False, "train.compile=false")
    with pytest.raises(ValueError, match="train.compile must be true, false or auto, got 'yes please'"):
        resolve_compile("yes please", cpu)


def _tiny_model_and_batch():
    cfg = load_config(CONFIG_DIR / "demo.yaml", [
        "data.img_size=32", "model.encoder_kwargs={width: 8, pretrained: false}",
        "model.decoder_kwargs={hidden_size: 32, n_blocks: 2}", "model.c_dim=16"])
    torch.manual_seed(0)
    model = build_model(cfg["model"]).train()
    with torch.no_grad():  # off the initialisation, where CBN's gamma/beta and the residual branches are
        for q in model.parameters():  # zero and so are most gradients
            q.add_(torch.randn(q.shape, generator=torch.Generator().manual_seed(q.numel())) * 0.1)
    g = torch.Generator().manual_seed(1)
    p = torch.rand(4, 256, 3, generator=g) - 0.5
    batch = {"points": p, "points.occ": (p.norm(dim=-1) < 0.3).float(), "inputs": torch.rand(4, 3, 32, 32, generator=g)}
    return model, batch


def _one_step(model, batch, compile: bool, log=None):
    step = TrainingStep(LossModule(model), torch.device("cpu"), compile=compile, log=log)
    loss, parts = step(batch)
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    return step, loss.item(), grads, {n: b.clone() for n, b in model.named_buffers()}


@needs_compiler
def test_the_compiled_step_computes_the_eager_step():
    # against a float64 eager step: the compiled float32 step no further from it than about the
    # eager float32 step (inductor orders sums differently; a wrong term would be off by far more)
    torch._dynamo.reset()
    model, batch = _tiny_model_and_batch()
    exact = copy.deepcopy(model).double()
    exact.decoder.fast_path = False
    _, loss64, grads64, buffers64 = _one_step(exact, {k: v.double() for k, v in batch.items()}, compile=False)
    _, loss, grads, buffers = _one_step(copy.deepcopy(model), batch, compile=False)
    step, loss_c, grads_c, buffers_c = _one_step(model, batch, compile=True)
    assert step.compiled and step.failure is None  # it did compile (and falls back only on failure)
    assert abs(loss_c - loss64) <= 10 * abs(loss - loss64) + 1e-6 * abs(loss64)
    floor = 1e-6 * max(g.abs().max().item() for g in grads64.values())
    for name, g64 in grads64.items():  # the encoder's and the decoder's (CBN gamma/beta included)
        g64 = g64.float()
        err, err_c = (grads[name] - g64).abs().max().item(), (grads_c[name] - g64).abs().max().item()
        assert err_c <= 10 * err + floor, (name, err_c, err)
    for name, b in buffers.items():  # batch-norm running statistics, updated once
        torch.testing.assert_close(buffers_c[name], b, rtol=1e-5, atol=1e-6, msg=name)
        assert (b.double() - buffers64[name]).abs().max() < 1e-4
    assert all(g.abs().max() > 0 for g in grads64.values())  # every parameter is checked on a non-zero gradient


def test_a_first_step_that_cannot_compile_runs_eagerly_from_the_state_before_it():
    # no C++ compiler (a real failure of inductor's CPU code generation, caches off so nothing is reused)
    torch._dynamo.reset()
    model, batch = _tiny_model_and_batch()
    twin = copy.deepcopy(model)
    _, loss, grads, buffers = _one_step(model, batch, compile=False)
    messages = []
    with torch._inductor.config.patch({"cpp.cxx": ("/nonexistent/c++",), "fx_graph_cache": False,
                                        "autotune_local_cache": False}):
        step, loss_f, grads_f, buffers_f = _one_step(twin, batch, compile=True, log=messages.append)
    torch._dynamo.reset()
    assert not step.compiled and step.failure and "eager (torch.compile failed" in step.describe()
    assert len(messages) == 1 and "training eagerly" in messages[0]
    # the failed attempt's batch-norm update was undone: one update, as in the eager step
    assert loss_f == loss
    for name, b in buffers.items():
        assert torch.equal(buffers_f[name], b), name
    for name, g in grads.items():
        assert torch.equal(grads_f[name], g), name


def test_under_torchrun_a_first_step_that_cannot_compile_stops_the_run():
    # a second, eager backward would pair its all-reduces with those the failed one had started
    torch._dynamo.reset()
    model, batch = _tiny_model_and_batch()
    step = TrainingStep(LossModule(model), torch.device("cpu"), compile=True, distributed=True, log=None)
    with torch._inductor.config.patch({"cpp.cxx": ("/nonexistent/c++",), "fx_graph_cache": False,
                                        "autotune_local_cache": False}):
        with pytest.raises(RuntimeError, match="torch.compile failed on the first step under torchrun .*"
                                               "train with train.compile=false"):
            step(batch)
    torch._dynamo.reset()


def test_train_compile_auto_is_off_on_a_cpu_and_recorded(tiny_cfg):
    from onet.training import train

    tiny_cfg["train"].update(compile="auto", max_iters=1, validate_every=1)
    messages = []
    result = train(tiny_cfg, progress=False, log=messages.append)
    assert yaml.safe_load((result.out_dir / "config.yaml").read_text())["train"]["compile"] is False
    assert "training step: eager (train.compile=auto: off on cpu" in "\n".join(messages)


@needs_compiler
def test_train_with_compile_trains_and_records_it(tiny_cfg):
    from onet.training import train

    torch._dynamo.reset()
    tiny_cfg["train"].update(compile=True, max_iters=3, validate_every=3)
    messages = []
    result = train(tiny_cfg, progress=False, log=messages.append)
    torch._dynamo.reset()
    assert result.iterations == 3 and 0.0 <= result.last_val["val_iou"] <= 1.0
    assert yaml.safe_load((result.out_dir / "config.yaml").read_text())["train"]["compile"] is True
    assert any(m.startswith("training step: torch.compile (default mode)") for m in messages), messages
    assert not any("torch.compile failed" in m for m in messages), messages
    losses = [float(r["loss"]) for r in csv.DictReader(open(result.out_dir / "metrics.csv")) if r["loss"]]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_bad_train_compile_exits_2(tmp_path, value):
    res = subprocess.run([sys.executable, "-m", "onet", "train", "configs/demo.yaml", f"out_dir={tmp_path}",
                          f"train.compile={value}"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "'train.compile' must be true/false or auto" in res.stderr, res.stderr

"""Issue 12, serious items 1, 4, 5, 6: training faults (regression tests).

1. A non-finite loss, parameter or validation metric stops the run with a clear
   error; no checkpoint of a non-finite state is written; NaN is never "best".
4. Resuming never fetches or reads pretrained weights (the checkpoint holds them).
5. model_best.pt survives a kill between validation and checkpoint.
6. A resumed CPU run is bit-identical to an uninterrupted one.
The loaders' own refusal of non-finite arrays (item 1) is in test_bad_datasets.py.
"""

import csv

import pytest
import torch

from onet.training import train
from onet.utils.checkpoints import load_checkpoint


def _quiet(cfg, **kw):
    return train(cfg, progress=False, log=lambda *a: None, **kw)


def test_a_resumed_run_is_bit_identical_to_an_uninterrupted_one(tiny_cfg, tmp_path):
    """Stop mid-epoch (iteration 3 of 2-batch epochs), resume to 6: same losses, weights and optimizer state."""
    tiny_cfg["train"].update(batch_size=2, max_iters=6, validate_every=2, checkpoint_every=100,
                             lr_schedule="constant")  # a cosine schedule follows max_iters, which changes here
    tiny_cfg["out_dir"] = str(tmp_path / "straight")
    _quiet(tiny_cfg)
    tiny_cfg["out_dir"] = str(tmp_path / "resumed")
    tiny_cfg["train"]["max_iters"] = 3
    _quiet(tiny_cfg)
    assert load_checkpoint(tmp_path / "resumed" / "model.pt")["batch_in_epoch"] == 1
    tiny_cfg["train"]["max_iters"] = 6
    _quiet(tiny_cfg)

    def rows(run):
        return [(r["it"], r["epoch"], r["loss"]) for r in csv.DictReader(open(tmp_path / run / "metrics.csv"))
                if r["loss"]]
    assert rows("resumed") == rows("straight") and len(rows("straight")) == 6
    assert [r[1] for r in rows("straight")] == ["0", "0", "1", "1", "2", "2"]
    a, b = load_checkpoint(tmp_path / "straight" / "model.pt"), load_checkpoint(tmp_path / "resumed" / "model.pt")
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    for k, state in a["optimizer"]["state"].items():
        assert all(torch.equal(state[n], b["optimizer"]["state"][k][n]) for n in state)
    assert (a["it"], a["epoch"], a["batch_in_epoch"]) == (b["it"], b["epoch"], b["batch_in_epoch"])


def _nan_after(n):
    """OccupancyNetwork.compute_loss that turns NaN from its n-th call on."""
    from onet.models import OccupancyNetwork
    real, calls = OccupancyNetwork.compute_loss, []

    def compute_loss(model, *args, **kwargs):
        calls.append(1)
        loss, parts = real(model, *args, **kwargs)
        return (loss * float("nan") if len(calls) >= n else loss), parts
    return compute_loss


def test_a_non_finite_loss_stops_with_a_clear_error_and_no_checkpoint_of_it(tiny_cfg, monkeypatch):
    from onet.models import OccupancyNetwork
    from onet.training.trainer import NonFiniteError
    tiny_cfg["train"].update(max_iters=10, validate_every=2, checkpoint_every=1)
    monkeypatch.setattr(OccupancyNetwork, "compute_loss", _nan_after(3))
    with pytest.raises(NonFiniteError, match=r"loss is not finite \(nan\) at iteration 3.*objects in that batch"):
        _quiet(tiny_cfg)
    out = tiny_cfg["out_dir"]
    assert load_checkpoint(f"{out}/model.pt")["it"] == 2
    for name in ("model.pt", "model_best.pt"):
        state = load_checkpoint(f"{out}/{name}")
        assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_non_finite_parameters_are_never_written(tiny_cfg, monkeypatch):
    """A step that leaves NaN weights behind a finite loss: the checkpoint refuses to write them."""
    from onet.training.trainer import NonFiniteError
    tiny_cfg["train"].update(max_iters=10, validate_every=100, checkpoint_every=1)
    real_step, calls = torch.optim.Adam.step, []

    def poisoning_step(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            with torch.no_grad():
                self.param_groups[0]["params"][0].view(-1)[0] = float("nan")
        return out

    monkeypatch.setattr(torch.optim.Adam, "step", poisoning_step)
    with pytest.raises(NonFiniteError, match="parameters are not finite at iteration 2"):
        _quiet(tiny_cfg)
    assert load_checkpoint(f"{tiny_cfg['out_dir']}/model.pt")["it"] == 1


def _fake_validation(monkeypatch, ious):
    """trainer.validate returning the given IoUs in turn (the model is not run)."""
    import onet.training.trainer as trainer
    values = iter(ious)
    monkeypatch.setattr(trainer, "validate", lambda *a, **k: {"val_loss": 1.0, "val_iou": next(values),
                                                                 "val_skipped": 0})


def test_a_nan_metric_is_never_best(tiny_cfg, monkeypatch):
    from onet.training.trainer import NonFiniteError
    tiny_cfg["train"].update(max_iters=6, validate_every=2, checkpoint_every=2)
    _fake_validation(monkeypatch, [0.5, float("nan")])
    with pytest.raises(NonFiniteError, match="validation at iteration 4 gave val_loss 1.0, val_iou nan"):
        _quiet(tiny_cfg)
    best = load_checkpoint(f"{tiny_cfg['out_dir']}/model_best.pt")
    assert best["best_metric"] == 0.5 and best["it"] == 2


class _Killed(BaseException):
    pass


def test_model_best_survives_a_kill_between_validation_and_checkpoint(tiny_cfg, monkeypatch):
    """Killed right after model_best.pt (IoU 0.9) was written, before model.pt: the resumed run's
    worse validations (0.5) never replace it."""
    import onet.training.trainer as trainer
    tiny_cfg["train"].update(max_iters=4, validate_every=2, checkpoint_every=1)
    real_save = trainer.save_checkpoint

    def save(path, **state):
        if str(path).endswith("model.pt") and state["it"] == 2:
            raise _Killed()
        real_save(path, **state)

    monkeypatch.setattr(trainer, "save_checkpoint", save)
    _fake_validation(monkeypatch, [0.9])
    with pytest.raises(_Killed):
        _quiet(tiny_cfg)
    out = tiny_cfg["out_dir"]
    saved = load_checkpoint(f"{out}/model_best.pt")
    assert saved["best_metric"] == 0.9 and load_checkpoint(f"{out}/model.pt")["it"] == 1

    monkeypatch.setattr(trainer, "save_checkpoint", real_save)
    _fake_validation(monkeypatch, [0.5, 0.5, 0.5])
    result = _quiet(tiny_cfg)
    best = load_checkpoint(f"{out}/model_best.pt")
    assert result.best_metric == 0.9 and best["best_metric"] == 0.9 and best["it"] == 2
    assert all(torch.equal(best["model"][k], saved["model"][k]) for k in saved["model"])


def test_resuming_never_fetches_pretrained_weights(tiny_cfg, monkeypatch):
    import onet.models.image as image
    tiny_cfg["model"]["encoder_kwargs"] = {"width": 64, "pretrained": False}
    tiny_cfg["train"]["max_iters"] = 1
    _quiet(tiny_cfg)
    tiny_cfg["model"]["encoder_kwargs"]["pretrained"] = True  # as configs/img.yaml: the weights are in model.pt

    def offline(*args, **kwargs):
        raise AssertionError("pretrained weights were fetched or read")

    monkeypatch.setattr(image, "load_imagenet_state_dict", offline)
    tiny_cfg["train"]["max_iters"] = 2
    assert _quiet(tiny_cfg).iterations == 2


def test_resuming_with_another_model_is_a_config_error_naming_the_checkpoint(tiny_cfg):
    from onet.utils.errors import ConfigError
    tiny_cfg["train"]["max_iters"] = 1
    _quiet(tiny_cfg)
    tiny_cfg["model"]["decoder_kwargs"] = {"hidden_size": 16, "n_blocks": 1}
    tiny_cfg["train"]["max_iters"] = 2
    with pytest.raises(ConfigError, match=r"model.pt was trained with another model than this config describes"):
        _quiet(tiny_cfg)

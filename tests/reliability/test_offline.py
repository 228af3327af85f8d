"""Issue 12, serious item 4: generating from an image model's checkpoint never fetches or reads
pretrained (ImageNet) weights, which the checkpoint then overwrites: `onet generate` works offline."""

from __future__ import annotations

from pathlib import Path

import yaml

from onet.utils.checkpoints import load_checkpoint, save_checkpoint

from .helpers import run_cli


def test_generate_from_an_image_checkpoint_trained_from_pretrained_weights_runs_offline(trained, tmp_path,
                                                                                       monkeypatch):
    import onet.models.image as image
    cfg_path = trained("img")
    cfg = yaml.safe_load(Path(cfg_path).read_text())
    # the checkpoint of a run that started from ImageNet weights (configs/img.yaml: pretrained: true)
    state = load_checkpoint(Path(cfg["out_dir"]) / "model.pt")
    state["model_config"]["encoder_kwargs"]["pretrained"] = True
    ckpt = tmp_path / "from_imagenet.pt"
    save_checkpoint(ckpt, **state)

    def offline(*args, **kwargs):
        raise AssertionError("pretrained weights were fetched or read")

    monkeypatch.setattr(image, "load_imagenet_state_dict", offline)
    monkeypatch.setattr(image, "_torchvision_weights", offline)
    res = run_cli("generate", cfg_path, "--checkpoint", ckpt, "--output", tmp_path / "gen", "--no-progress")
    assert res.code == 0, res.err
    assert list((tmp_path / "gen" / "meshes").rglob("*.ply"))

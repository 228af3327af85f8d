"""ResNet-18 image encoder: torchvision key layout, pretrained weights handling."""

import sys

import pytest
import torch

from onet.models import ENCODERS, PretrainedWeightsUnavailable
from onet.models.image import ResNet18Encoder


def torchvision_resnet18_keys():
    """The state_dict keys of torchvision.models.resnet18() (122 entries), written out."""
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    keys = ["conv1.weight"] + [f"bn1.{k}" for k in bn]
    for layer in (1, 2, 3, 4):
        for block in (0, 1):
            prefix = f"layer{layer}.{block}"
            keys += [f"{prefix}.conv1.weight"] + [f"{prefix}.bn1.{k}" for k in bn]
            keys += [f"{prefix}.conv2.weight"] + [f"{prefix}.bn2.{k}" for k in bn]
            if layer > 1 and block == 0:
                keys += [f"{prefix}.downsample.0.weight"] + [f"{prefix}.downsample.1.{k}" for k in bn]
    keys += ["fc.weight", "fc.bias"]
    return keys


def test_keys_and_shapes_match_torchvision():
    expected = torchvision_resnet18_keys()
    assert len(expected) == 122
    sd = ENCODERS["resnet18"](c_dim=256).state_dict()
    assert list(sd) == expected
    assert sd["conv1.weight"].shape == (64, 3, 7, 7)
    assert sd["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1)
    assert sd["layer4.1.conv2.weight"].shape == (512, 512, 3, 3)
    assert sd["fc.weight"].shape == (256, 512)


def test_small_width_forward_shape():
    enc = ResNet18Encoder(c_dim=16, width=8)
    assert enc.fc.in_features == 64
    assert enc(torch.rand(2, 3, 32, 32)).shape == (2, 16)


def test_imagenet_normalisation_inside_forward():
    enc = ResNet18Encoder(c_dim=4, width=8).eval()
    raw = ResNet18Encoder(c_dim=4, width=8, normalize=False).eval()
    raw.load_state_dict(enc.state_dict())
    img = torch.rand(1, 3, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(enc(img), raw((img - mean) / std))


def test_pretrained_path_loads_a_torchvision_state_dict(tmp_path):
    torch.manual_seed(0)
    source = ResNet18Encoder(c_dim=1000).state_dict()  # same layout as torchvision, 1000-class fc
    source["layer3.1.bn2.running_mean"] += 1.0
    torch.save(source, tmp_path / "resnet18.pth")
    enc = ResNet18Encoder(c_dim=256, pretrained=str(tmp_path / "resnet18.pth"))
    sd = enc.state_dict()
    for key in source:
        if not key.startswith("fc."):
            assert torch.equal(sd[key], source[key]), key
    assert sd["fc.weight"].shape == (256, 512)


def test_pretrained_path_with_wrong_layout_is_an_error(tmp_path):
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="missing"):
        ResNet18Encoder(pretrained=tmp_path / "bad.pth")
    with pytest.raises(PretrainedWeightsUnavailable, match="not found"):
        ResNet18Encoder(pretrained=tmp_path / "nothing.pth")


def test_pretrained_needs_full_width():
    with pytest.raises(ValueError, match="width=64"):
        ResNet18Encoder(pretrained=True, width=8)


def test_pretrained_true_without_torchvision_raises_helpfully(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision -> ImportError
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # empty hub cache
    with pytest.raises(PretrainedWeightsUnavailable) as err:
        ResNet18Encoder(c_dim=256, pretrained=True)
    assert isinstance(err.value, RuntimeError)
    msg = str(err.value)
    assert "pip install torchvision" in msg and ".pth" in msg


def test_pretrained_true_uses_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    source = ResNet18Encoder(c_dim=1000).state_dict()
    (tmp_path / "checkpoints").mkdir()
    torch.save(source, tmp_path / "checkpoints" / "resnet18-f37072fd.pth")
    enc = ResNet18Encoder(c_dim=256, pretrained=True)
    assert torch.equal(enc.state_dict()["layer1.0.conv1.weight"], source["layer1.0.conv1.weight"])

"""ResNet-18 image encoder: torchvision key layout, pretrained weights handling, small-grid convolutions."""

import sys

import pytest
import torch

from onet.models import ENCODERS, PretrainedWeightsUnavailable
from onet.models import image as image_module
from onet.models.image import ResNet18Encoder, _small_grid, conv2d


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


@pytest.mark.parametrize("grid,stride,channels_last", [((2, 2), 1, True), ((2, 2), 1, False), ((1, 1), 1, True),
                                                       ((2, 1), 1, True), ((2, 2), 2, True)])
def test_small_grid_conv_equals_conv2d(grid, stride, channels_last):
    g = torch.Generator().manual_seed(0)
    conv = torch.nn.Conv2d(5, 7, 3, stride=stride, padding=1, bias=False).double()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    conv = conv.to(memory_format=fmt)
    x = torch.randn(4, 5, *grid, generator=g, dtype=torch.float64).contiguous(memory_format=fmt).requires_grad_()
    assert _small_grid(conv, x)
    y = conv2d(conv, x)
    ref = torch.nn.functional.conv2d(x, conv.weight, stride=stride, padding=1)
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    dy = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    dx, dw = torch.autograd.grad(y, (x, conv.weight), dy)
    dx_ref, dw_ref = torch.autograd.grad(ref, (x, conv.weight), dy)
    torch.testing.assert_close(dx, dx_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dw, dw_ref, rtol=1e-12, atol=1e-12)
    assert dw.stride() == conv.weight.stride()  # no layout copy when the gradient is accumulated


def test_small_grid_conv_only_where_the_dense_matrix_is_small():
    conv = torch.nn.Conv2d(4, 4, 3, padding=1, bias=False)
    assert _small_grid(conv, torch.rand(1, 4, 2, 2))
    assert not _small_grid(conv, torch.rand(1, 4, 3, 3))  # the dense matrix would be mostly zeros
    assert not _small_grid(torch.nn.Conv2d(4, 4, 1, bias=False), torch.rand(1, 4, 2, 2))
    assert not _small_grid(torch.nn.Conv2d(4, 4, 3, padding=1, groups=2, bias=False), torch.rand(1, 4, 2, 2))
    assert not _small_grid(torch.nn.Conv2d(4, 4, 3, padding=1, bias=True), torch.rand(1, 4, 2, 2))


@pytest.mark.parametrize("train", [True, False])
def test_encoder_with_small_grid_convs_equals_plain_convs(train, monkeypatch):
    # 64-pixel images: the last stage runs on 2 x 2 grids, through the dense path
    torch.manual_seed(0)
    enc = ResNet18Encoder(c_dim=8, width=8).double().train(train)
    ref = ResNet18Encoder(c_dim=8, width=8).double().train(train)
    ref.load_state_dict(enc.state_dict())
    x = torch.rand(3, 3, 64, 64, dtype=torch.float64)
    calls = []
    apply = image_module._SmallGridConv.apply
    monkeypatch.setattr(image_module._SmallGridConv, "apply", lambda *a: calls.append(1) or apply(*a))
    out = enc(x)
    assert len(calls) == 3  # layer4: block 0's second conv, block 1's two (block 0's first has stride 2 on 4 x 4)
    monkeypatch.setattr(image_module, "SMALL_GRID_MAX_PIXELS_PER_TAP", 0.0)
    out_ref = ref(x)
    assert len(calls) == 3
    torch.testing.assert_close(out, out_ref, rtol=1e-10, atol=1e-10)
    out.square().sum().backward()
    out_ref.square().sum().backward()
    for (name, p), q in zip(enc.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-10, msg=lambda m, n=name: f"{n}: {m}")


def test_small_grid_conv_under_bf16_autocast_gives_fp32_weight_gradients():
    enc = ResNet18Encoder(c_dim=8, width=8).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        c = enc(torch.rand(2, 3, 64, 64))
    assert c.dtype == torch.bfloat16
    c.float().sum().backward()
    grad = enc.layer4[1].conv2.weight.grad
    assert grad.dtype == torch.float32 and torch.isfinite(grad).all() and grad.abs().sum() > 0

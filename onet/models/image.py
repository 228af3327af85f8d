"""Image encoder: ResNet-18 with torchvision's parameter layout.

The module tree (conv1, bn1, layer1.0.conv1, ..., layer2.0.downsample.0, fc)
matches torchvision's `resnet18`, so its ImageNet state_dict loads with strict
key matching, except `fc`, which is replaced by Linear(8 * width, c_dim).
torchvision itself is optional: it is only used to fetch the weights.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's ResNet18_Weights.IMAGENET1K_V1 (file name as stored in the torch hub cache)
RESNET18_URL = "https://download.pytorch.org/models/resnet18-f37072fd.pth"
RESNET18_FILE = "resnet18-f37072fd.pth"


class PretrainedWeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but could not be obtained."""


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with batch norm and an identity/1x1 shortcut.

    (B, in_planes, H, W) -> (B, planes, H / stride, W / stride)
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class ResNet18Encoder(nn.Module):
    """ResNet-18 image encoder (DESIGN §5).

    Args:
        c_dim: output code size (fc: Linear(8 * width, c_dim)).
        pretrained: False (random init), True (torchvision's ImageNet weights: from
            the torch hub cache, else downloaded through torchvision) or a path to a
            .pth state_dict with torchvision's key names (fc is ignored).
        width: channels of the first stage (64 in ResNet-18; smaller for quick
            demos). Pretrained weights need width 64.
        normalize: subtract ImageNet mean / divide by std inside forward.

    Input: images (B, 3, H, W), RGB in [0, 1]. Output: c (B, c_dim).
    """

    def __init__(self, c_dim: int = 256, pretrained: bool | str | os.PathLike = False, width: int = 64,
                 normalize: bool = True):
        super().__init__()
        if pretrained is not False and width != 64:
            raise ValueError(f"pretrained ResNet-18 weights need width=64, got width={width}")
        self.c_dim = c_dim
        self.normalize = normalize
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        widths = [width, 2 * width, 4 * width, 8 * width]
        in_planes = width
        for i, planes in enumerate(widths):
            stride = 1 if i == 0 else 2
            layer = nn.Sequential(BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes, 1))
            self.add_module(f"layer{i + 1}", layer)
            in_planes = planes
        self.fc = nn.Linear(8 * width, c_dim)
        self._init_weights()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if pretrained is not False:
            self.load_backbone(load_imagenet_state_dict(pretrained))
        # channels-last conv weights make oneDNN/cuDNN run every convolution channels-last (NCHW
        # inputs included) without per-call reorders: training step of the encoder 1.1x on a
        # 2-core CPU (B=16 at 224 px). Values are the same; state_dict keys and shapes too.
        self.to(memory_format=torch.channels_last)

    def _init_weights(self) -> None:
        # torchvision's initialisation (kaiming fan-out for convs, BN weight 1 / bias 0)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def load_backbone(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load a torchvision-layout resnet18 state_dict, all keys but fc.* strictly."""
        backbone = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
        missing, unexpected = self.load_state_dict(backbone, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise ValueError(
                "state_dict does not match torchvision's resnet18 layout: "
                f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) images in [0, 1]. Returns c (B, c_dim)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(x.shape)}")
        if self.normalize:
            x = (x - self.mean) / self.std
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # (B, 8 * width)
        return self.fc(x)


def load_imagenet_state_dict(pretrained: bool | str | os.PathLike) -> dict[str, torch.Tensor]:
    """torchvision-layout ResNet-18 ImageNet weights.

    pretrained=True: the file torchvision caches in the torch hub folder
    (`torch.hub.get_dir()/checkpoints/resnet18-f37072fd.pth`) when present, else
    torchvision's download. A path: that file (a plain state_dict, or a dict
    holding one under 'state_dict' or 'model').
    Raises PretrainedWeightsUnavailable when the weights cannot be had.
    """
    if pretrained is True:
        return _torchvision_weights()
    path = Path(pretrained)
    if not path.is_file():
        raise PretrainedWeightsUnavailable(f"pretrained weights file not found: {path}")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise PretrainedWeightsUnavailable(f"{path} does not hold a state_dict (got {type(obj).__name__})")
    return obj


def _torchvision_weights() -> dict[str, torch.Tensor]:
    how = (
        "To provide them: `pip install torchvision` and run once with network access "
        "(torchvision caches them in the torch hub folder), or download "
        f"{RESNET18_URL} and pass its path as encoder_kwargs.pretrained "
        f"(or place it at {Path(torch.hub.get_dir()) / 'checkpoints' / RESNET18_FILE}); "
        "or set pretrained: false to train from scratch."
    )
    cached = Path(torch.hub.get_dir()) / "checkpoints" / RESNET18_FILE
    if cached.is_file():
        return torch.load(cached, map_location="cpu", weights_only=True)
    try:
        import torchvision
    except ImportError:
        raise PretrainedWeightsUnavailable(
            "ImageNet ResNet-18 weights requested (pretrained=True) but torchvision is not installed "
            "and the weights are not in the torch hub cache. " + how
        ) from None
    try:
        model = torchvision.models.resnet18(weights="IMAGENET1K_V1")
    except Exception as e:  # network down, no write access, ...
        raise PretrainedWeightsUnavailable(
            f"could not get torchvision's ImageNet ResNet-18 weights ({type(e).__name__}: {e}). " + how
        ) from e
    return model.state_dict()

"""Image encoder: ResNet-18 with torchvision's parameter layout.

The module tree (conv1, bn1, layer1.0.conv1, ..., layer2.0.downsample.0, fc)
matches torchvision's `resnet18`, so its ImageNet state_dict loads with strict
key matching, except `fc`, which is replaced by Linear(8 * width, c_dim).
torchvision itself is optional: it is only used to fetch the weights.
"""

from __future__ import annotations

import functools
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


# A convolution whose input grid has at most this many pixels per kernel tap runs as one
# dense matrix product on the CPU (`_SmallGridConv`). ResNet-18's last stage at 64-pixel
# inputs works on 2 x 2 grids, where oneDNN's direct convolution runs at about 25% of the
# matmul peak. 3x3 conv forward + backward, B = 32, 2-core AMD EPYC (Zen 3), oneDNN vs
# dense: 256 channels on 2 x 2 7.97 vs 3.89 ms, 64 on 1 x 1 0.57 vs 0.28; but 128 -> 256
# on 3 x 3 5.15 vs 8.56 (stride 2: 2.61 vs 4.23), where the dense matrix holds mostly zeros.
SMALL_GRID_MAX_PIXELS_PER_TAP = 0.5


@functools.lru_cache(maxsize=None)
def _tap_index(H: int, W: int, k: int, stride: int, padding: int) -> tuple[torch.Tensor, int, int]:
    """For a k x k conv on an H x W grid: (Ho*Wo*H*W,) kernel tap ky*k+kx joining each output
    pixel to each input pixel (row-major pairs), or k*k where the kernel does not reach."""
    Ho = (H + 2 * padding - k) // stride + 1
    Wo = (W + 2 * padding - k) // stride + 1
    oy, ox, iy, ix = torch.meshgrid(torch.arange(Ho), torch.arange(Wo), torch.arange(H), torch.arange(W),
                                    indexing="ij")
    ky, kx = iy - oy * stride + padding, ix - ox * stride + padding
    inside = (ky >= 0) & (ky < k) & (kx >= 0) & (kx < k)
    return torch.where(inside, ky * k + kx, k * k).reshape(-1), Ho, Wo


def _small_grid(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    k = conv.kernel_size
    # not under torch.compile (train.compile): its own convolution code is what it traces
    return (x.device.type == "cpu" and not torch.compiler.is_compiling() and x.dim() == 4 and k[0] == k[1]
            and conv.groups == 1 and conv.dilation == (1, 1) and conv.stride[0] == conv.stride[1]
            and conv.padding[0] == conv.padding[1] and conv.padding_mode == "zeros" and conv.bias is None
            and x.shape[2] * x.shape[3] <= SMALL_GRID_MAX_PIXELS_PER_TAP * k[0] * k[1])


class _SmallGridConv(torch.autograd.Function):
    """conv2d (no bias) on a small grid as y = x_flat @ D^T with D (Co*Ho*Wo, H*W*Ci) the dense
    matrix of the convolution, gathered from the weight: the same products as the direct
    convolution (plus zeros where the kernel does not reach), in one well-shaped matmul.
    Backward: dx = dy @ D, dD = dy^T @ x_flat, summed back onto the kernel taps."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu")  # backward under the forward's autocast state
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
        B, Ci, H, W = x.shape
        Co, k = weight.shape[0], weight.shape[2]
        taps, Ho, Wo = _tap_index(H, W, k, stride, padding)
        w = weight.permute(0, 2, 3, 1).reshape(Co, k * k, Ci)  # a view for channels-last weights
        w = torch.cat([w, w.new_zeros(Co, 1, Ci)], 1)  # tap k*k: zero
        D = w[:, taps].reshape(Co * Ho * Wo, H * W * Ci)  # rows (co, o), columns (i, ci)
        xf = x.permute(0, 2, 3, 1).reshape(B, H * W * Ci)
        ctx.save_for_backward(xf, D)
        ctx.geometry = (x.shape, weight.shape, taps, Ho, Wo)
        ctx.weight_channels_last = weight.is_contiguous(memory_format=torch.channels_last)
        return (xf @ D.t()).view(B, Co, Ho, Wo)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, dy: torch.Tensor):
        xf, D = ctx.saved_tensors
        (B, Ci, H, W), (Co, _, k, _), taps, Ho, Wo = ctx.geometry
        dyf = dy.reshape(B, Co * Ho * Wo)
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = (dyf @ D).view(B, H, W, Ci).permute(0, 3, 1, 2)  # channels-last memory
        if ctx.needs_input_grad[1]:
            dD = (dyf.t() @ xf).view(Co, Ho * Wo * H * W, Ci)
            dw = dD.new_zeros(Co, k * k + 1, Ci).index_add_(1, taps, dD)[:, :k * k].contiguous()
            dw = dw.view(Co, k, k, Ci).permute(0, 3, 1, 2)  # channels-last memory
            if not ctx.weight_channels_last:
                dw = dw.contiguous()  # the weight's layout: accumulated without a copy
        return dx, dw, None, None


def conv2d(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """conv(x), as a dense matrix product where the grid is small (`_SmallGridConv`)."""
    if _small_grid(conv, x):
        return _SmallGridConv.apply(x, conv.weight, conv.stride[0], conv.padding[0])
    return conv(x)


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
        out = F.relu(self.bn1(conv2d(self.conv1, x)))
        out = self.bn2(conv2d(self.conv2, out))
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

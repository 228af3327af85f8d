"""Local-feature occupancy model: a point cloud -> three feature planes -> f(p, features(p)).

The thesis's models condition the decoder on one global code c per object, which
has to describe the whole shape; trained on a few hundred objects for minutes, it
learns a mean shape per class. Here the encoder keeps local features instead
(the three-plane variant of Peng et al., "Convolutional Occupancy Networks", 2020,
the successor of the thesis's model, scaled down for CPUs):

- `TriplanePointnet`: a ResNet-PointNet whose blocks pool over the points that
  share a cell of each axis-aligned plane (xz, xy, yz; R x R cells) instead of over
  the whole cloud; the per-point features are averaged into the three planes and
  refined by one small 2-D U-Net shared by the planes. Output: planes (B, 3, C, R, R).
- `LocalDecoder`: c(p) = the sum over the planes of the bilinear sample of the
  plane at p's projection; a plain ResNet MLP on fc_p(p) with fc_c_i(c(p)) added
  before block i (no normalisation, so every point is decoded on its own, in
  training and in eval mode alike).

Coordinates: points live in the box [-(1 + padding) / 2, (1 + padding) / 2]^3
(padding 0.1 = the data's 1.1 box); u = p / (1 + padding) + 1/2 in [0, 1] maps
them to the planes, cell i of R covering [i / R, (i + 1) / R) - the convention of
`grid_sample` with align_corners=False, so pooling and sampling agree on cells.
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

# index_reduce (the cell pooling) warns once per process that its API is in beta; its
# semantics are covered by tests/models/test_local.py
warnings.filterwarnings("ignore", message=r"index_reduce\(\) is in beta")

from onet.models.layers import ResnetBlockFC

# the three planes as (first, second) coordinate axes: the first indexes columns
# (grid_sample's x), the second rows
PLANES = ((0, 2), (0, 1), (1, 2))


def _unit(p: torch.Tensor, padding: float) -> torch.Tensor:
    """Box coordinates -> [0, 1) (clamped: points outside the box use the border cells)."""
    return (p / (1 + padding) + 0.5).clamp(0.0, 1.0 - 1e-6)


def plane_cells(p: torch.Tensor, resolution: int, padding: float) -> torch.Tensor:
    """Flat cell index (row * R + col) of every point on each plane: (B, T, 3) -> (B, 3, T) int64."""
    u = (_unit(p, padding) * resolution).long()
    return torch.stack([u[..., b] * resolution + u[..., a] for a, b in PLANES], dim=1)


def sample_planes(planes: torch.Tensor, p: torch.Tensor, padding: float) -> torch.Tensor:
    """Sum over the planes of their bilinear samples at p's projections.

    planes: (B, 3, C, R, R); p: (B, T, 3). Returns (B, T, C); differentiable in both.
    The values of `grid_sample` (bilinear, border padding, align_corners=False).
    """
    B, n, C, R, _ = planes.shape
    if R < 2 or p.requires_grad:
        # refinement and normals differentiate through p (twice): grid_sample's own derivatives
        return _grid_sample_planes(planes, p, padding)
    # in fp32 also under bf16 autocast: bf16 coordinates would snap to 1/256 of the box
    index, weight = _bilinear_corners(p.float(), R, padding)
    # the planes' channels-last rows (B 3 R R, C): a view for the U-Net's channels-last output
    table = planes.float().permute(0, 1, 3, 4, 2).reshape(B * n * R * R, C)
    return _CornerSum.apply(table, index.view(-1, 4 * n), weight.view(-1, 4 * n)).view(B, p.shape[1], C)


def _grid_sample_planes(planes: torch.Tensor, p: torch.Tensor, padding: float) -> torch.Tensor:
    B, n, C, R, _ = planes.shape
    g = 2 * _unit(p.float(), padding) - 1  # grid_sample's [-1, 1]
    grid = torch.stack([g[..., [a, b]] for a, b in PLANES], dim=1)  # (B, 3, T, 2)
    out = F.grid_sample(planes.reshape(B * n, C, R, R).float(), grid.reshape(B * n, 1, -1, 2),
                        mode="bilinear", padding_mode="border", align_corners=False)  # (3B, C, 1, T)
    return out.reshape(B, n, C, p.shape[1]).sum(dim=1).transpose(1, 2).contiguous()


def _bilinear_corners(p: torch.Tensor, R: int, padding: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of the four corners of p's cell on each plane and their bilinear weights, as
    grid_sample reads them (texel centres at (i + 1/2) / R, border: coordinates clamped to
    the outer centres). p: (B, T, 3), R >= 2. Returns index (B, T, 3, 4) int64 into the rows
    ((b * 3 + plane) * R + row) * R + col, and weight (B, T, 3, 4)."""
    B, T, _ = p.shape
    x = (_unit(p, padding) * R - 0.5).clamp(0, R - 1)
    x0 = x.floor().clamp(max=R - 2)  # at the last centre: the left corner with weight 0
    w1 = x - x0
    i0 = x0.long()
    base = torch.arange(B, device=p.device).view(B, 1) * 3
    index, weight = [], []
    for k, (a, b) in enumerate(PLANES):
        row = ((base + k) * R + i0[..., b]) * R + i0[..., a]  # (B, T)
        index.append(torch.stack([row, row + 1, row + R, row + R + 1], dim=-1))
        wa, wb = w1[..., a], w1[..., b]
        weight.append(torch.stack([(1 - wb) * (1 - wa), (1 - wb) * wa, wb * (1 - wa), wb * wa], dim=-1))
    return torch.stack(index, dim=2), torch.stack(weight, dim=2)


class _CornerSum(torch.autograd.Function):
    """out[i] = sum_j weight[i, j] * table[index[i, j]]: the bilinear samples of all three
    planes summed in one gather (embedding_bag), written point-major as the decoder reads
    them. Backward (the table only: training does not differentiate through p) is one
    index_add of the weighted output gradients, where autograd through grid_sample costs
    a transposing copy and a gradient per plane (B=16, T=2048, C=32, R=32, 1 thread, Zen 1:
    forward 0.57x, forward + backward 0.71x the CPU time of grid_sample's)."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index, weight)
        ctx.rows = table.shape[0]
        return F.embedding_bag(index, table, per_sample_weights=weight, mode="sum")

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        index, weight = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        out = grad.new_zeros(ctx.rows, grad.shape[1])
        # corner by corner: (N, C) products that the allocator reuses, not one (N, 12, C) block
        for i, w in zip(index.t(), weight.t()):
            out.index_add_(0, i, grad * w.unsqueeze(1))
        return out, None, None


class _CatChannels(torch.autograd.Function):
    """torch.cat(xs, dim=1) whose backward hands each input a dense channels-last gradient.

    Autograd's cat backward returns channel slices of the output gradient, strided views
    that send the U-Net's bilinear-upsample backward and ReLU backward to slow generic
    paths (upsample backward at (24, 32, 16, 16): 10.3 ms from a slice, 1.5 ms from a dense
    tensor; 1 thread, Zen 1). Values and gradients are torch.cat's."""

    @staticmethod
    def forward(ctx, *xs: torch.Tensor) -> torch.Tensor:
        ctx.sizes = [x.shape[1] for x in xs]
        return torch.cat(xs, dim=1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return tuple(g.contiguous(memory_format=torch.channels_last) for g in grad.split(ctx.sizes, dim=1))


def _pool(rows: torch.Tensor, index: torch.Tensor, n_cells: int, reduce: str) -> torch.Tensor:
    """Reduce feature rows (N, H) into n_cells cells by their cell ids (N,) -> (n_cells, H).

    reduce "amax" or "mean"; empty cells 0. Row-wise `index_reduce` + `index_select`
    instead of `scatter_reduce` + `gather` with an index expanded over the channels:
    the same values and gradients (ties share the gradient alike), the pooling block's
    forward + backward 0.4x the CPU time (B=32, 900 points x 3 planes, h=32)."""
    out = rows.new_zeros(n_cells, rows.shape[1])
    return out.index_reduce(0, index, rows, reduce, include_self=False)


class UNet2d(nn.Module):
    """A small 2-D U-Net: `levels` resolutions, two 3x3 conv + ReLU per level on each side,
    max-pool down, bilinear up + concatenated skip; channels `channels * 2^level`;
    a 1x1 conv back to `out_channels`. (N, in, R, R) -> (N, out, R, R); R divisible by
    2^(levels - 1)."""

    def __init__(self, in_channels: int, out_channels: int, channels: int = 32, levels: int = 3):
        super().__init__()
        if levels < 1 or channels < 1:
            raise ValueError(f"a U-Net needs levels >= 1 and channels >= 1, got {levels}, {channels}")
        self.levels = levels
        widths = [channels * 2**i for i in range(levels)]
        self.down = nn.ModuleList()
        prev = in_channels
        for w in widths:
            self.down.append(_conv_pair(prev, w))
            prev = w
        self.up = nn.ModuleList(_conv_pair(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(levels - 1)))
        self.out = nn.Conv2d(widths[0], out_channels, 1)
        # channels-last conv weights: oneDNN runs every convolution channels-last without per-call
        # reorders (forward + backward 0.85x the CPU time at 96 x 32 x 32 x 32, AVX2, 1 thread);
        # values, state_dict keys and shapes are the same
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            if i > 0:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(_CatChannels.apply(x, skip))
        return self.out(x)


def _conv_pair(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.ReLU(inplace=True))


class TriplanePointnet(nn.Module):
    """Point cloud -> three feature planes (see the module docstring).

    fc_pos dim -> 2h; block_0 2h -> h; then (n_blocks - 1) times [concat the per-plane
    cell max-pools (summed over planes) -> 2h, block -> h]; fc_c h -> c_dim per point;
    mean over each plane's cells; a shared U-Net (unet_levels, unet_channels; none when
    unet_levels is 0) on each plane.

    Args:
        c_dim: feature channels C of the planes; dim: 3; hidden_dim: h;
        plane_resolution: R (divisible by 2^(unet_levels - 1)); padding: the box margin.
    Input: points (B, T, 3). Output: planes (B, 3, C, R, R).
    """

    def __init__(self, c_dim: int = 32, dim: int = 3, hidden_dim: int = 32, n_blocks: int = 5,
                 plane_resolution: int = 32, unet_levels: int = 3, unet_channels: int = 32,
                 padding: float = 0.1):
        super().__init__()
        if dim != 3:
            raise ValueError(f"three planes need 3-D points, got dim={dim}")
        if n_blocks < 1 or plane_resolution < 1 or hidden_dim < 1 or c_dim < 1:
            raise ValueError(f"invalid sizes: n_blocks={n_blocks} plane_resolution={plane_resolution} "
                             f"hidden_dim={hidden_dim} c_dim={c_dim}")
        if unet_levels > 0 and plane_resolution % 2 ** (unet_levels - 1):
            raise ValueError(f"plane_resolution {plane_resolution} must be divisible by 2^(unet_levels - 1) "
                             f"= {2 ** (unet_levels - 1)}")
        self.c_dim, self.dim = c_dim, dim
        self.resolution, self.padding = plane_resolution, padding
        self.fc_pos = nn.Linear(dim, 2 * hidden_dim)
        self.blocks = nn.ModuleList(ResnetBlockFC(2 * hidden_dim, hidden_dim) for _ in range(n_blocks))
        self.fc_c = nn.Linear(hidden_dim, c_dim)
        self.unet = UNet2d(c_dim, c_dim, unet_channels, unet_levels) if unet_levels > 0 else None

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        """p: (B, T, 3). Returns planes (B, 3, c_dim, R, R)."""
        if p.dim() != 3 or p.shape[2] != self.dim:
            raise ValueError(f"points must be (B, T, {self.dim}), got {tuple(p.shape)}")
        B, T, _ = p.shape
        R = self.resolution
        cells = plane_cells(p, R, self.padding)  # (B, 3, T)
        # every object's planes' cells as one index space (B * 3 R^2 cells), the points' rows
        # (B, 3, T) in the order of net.repeat(1, 3, 1): one reduce and one select per block
        n_cells = 3 * R * R
        offset = torch.arange(3, device=p.device).view(1, 3, 1) * R * R \
            + torch.arange(B, device=p.device).view(B, 1, 1) * n_cells
        flat = (cells + offset).reshape(-1)  # (B * 3T,)
        net = self.blocks[0](self.fc_pos(p))  # (B, T, h)
        h = net.shape[2]
        if len(self.blocks) > 1:
            # the blocks' max-pools only over the cells that hold points (at most 3T of the 3R^2
            # per object): the same maxima, a buffer a quarter the size here and no passes over
            # empty cells (with the corner gather: the pointcloud_cpu step 0.88x its CPU time)
            occupied, slot = torch.unique(flat, return_inverse=True)
        for block in self.blocks[1:]:
            pooled = _pool(net.repeat(1, 3, 1).reshape(-1, h), slot, len(occupied), "amax")  # (cells, h)
            local = pooled.index_select(0, slot).view(B, 3, T, h).sum(dim=1)
            net = block(torch.cat([net, local], dim=2))
        c = self.fc_c(net)  # (B, T, C)
        planes = _pool(c.repeat(1, 3, 1).reshape(-1, self.c_dim), flat, B * n_cells, "mean")  # (B 3R^2, C)
        # rows = second axis; the permuted view is already channels-last, the U-Net's layout
        planes = planes.reshape(B * 3, R, R, self.c_dim).permute(0, 3, 1, 2)
        if self.unet is not None:
            planes = self.unet(planes.contiguous(memory_format=torch.channels_last))
        return planes.reshape(B, 3, self.c_dim, R, R)


class LocalDecoder(nn.Module):
    """f(p, z, planes) -> logits: fc_p(p) (+ fc_z(z)), then n_blocks times
    [+ fc_c_i(c(p)), ResNet block], relu, fc_out; c(p) from `sample_planes`.

    Args:
        dim: 3; z_dim: latent size (0: none); c_dim: plane channels C;
        hidden_size: H; n_blocks; padding: the box margin (as the encoder's);
        fourier_levels: L > 0 feeds fc_p sin and cos of 2^k pi v (k < L, v = p / (1 + padding)
            per axis) beside p: where inside a plane cell p lies, which the planes' bilinear
            samples blur (L = 7 reaches a period of 1/32 of the box). 0: p alone.
    """

    # the thesis decoders' switch for their fused trunk; this decoder has none
    fast_path = False

    def __init__(self, dim: int = 3, z_dim: int = 0, c_dim: int = 32, hidden_size: int = 32,
                 n_blocks: int = 5, padding: float = 0.1, fourier_levels: int = 0):
        super().__init__()
        if dim != 3 or c_dim < 1 or hidden_size < 1 or n_blocks < 1 or z_dim < 0 or not 0 <= fourier_levels <= 16:
            raise ValueError(f"invalid local decoder sizes: dim={dim} z_dim={z_dim} c_dim={c_dim} "
                             f"hidden_size={hidden_size} n_blocks={n_blocks} fourier_levels={fourier_levels} "
                             "(needs dim 3, c_dim >= 1 and 0 <= fourier_levels <= 16)")
        self.dim, self.z_dim, self.c_dim = dim, z_dim, c_dim
        self.hidden_size, self.padding, self.fourier_levels = hidden_size, padding, fourier_levels
        self.fc_p = nn.Linear(dim * (1 + 2 * fourier_levels), hidden_size)
        self.fc_z = nn.Linear(z_dim, hidden_size) if z_dim > 0 else None
        self.fc_c = nn.ModuleList(nn.Linear(c_dim, hidden_size) for _ in range(n_blocks))
        self.blocks = nn.ModuleList(ResnetBlockFC(hidden_size) for _ in range(n_blocks))
        self.fc_out = nn.Linear(hidden_size, 1)

    def _check(self, p: torch.Tensor, z: torch.Tensor | None, c: torch.Tensor | None) -> None:
        if p.dim() != 3 or p.shape[2] != self.dim:
            raise ValueError(f"p must be (B, T, {self.dim}), got {tuple(p.shape)}")
        B = p.shape[0]
        if c is None or c.dim() != 5 or c.shape[:3] != (B, 3, self.c_dim):
            raise ValueError(f"the local decoder reads feature planes ({B}, 3, {self.c_dim}, R, R) from a "
                             f"plane encoder (e.g. pointnet_triplane), got {None if c is None else tuple(c.shape)}")
        if self.z_dim > 0 and (z is None or tuple(z.shape) != (B, self.z_dim)):
            raise ValueError(f"z must be ({B}, {self.z_dim}), got {None if z is None else tuple(z.shape)}")

    def forward(self, p: torch.Tensor, z: torch.Tensor | None, c: torch.Tensor) -> torch.Tensor:
        """p: (B, T, 3); z: (B, z_dim) or None; c: planes (B, 3, C, R, R). Returns logits (B, T)."""
        self._check(p, z, c)
        feat = sample_planes(c, p, self.padding)  # (B, T, C)
        net = self.fc_p(self._encode(p))
        if self.fc_z is not None:
            net = net + self.fc_z(z).unsqueeze(1)
        # every block's fc_c as one linear layer (H x n_blocks outputs): one matmul over the points
        # instead of n_blocks narrow ones, forward and backward
        weight = torch.cat([fc.weight for fc in self.fc_c])
        bias = torch.cat([fc.bias for fc in self.fc_c])
        for c_i, block in zip(F.linear(feat, weight, bias).chunk(len(self.blocks), dim=-1), self.blocks):
            net = block(net + c_i)
        return self.fc_out(F.relu(net)).squeeze(2)

    def _encode(self, p: torch.Tensor) -> torch.Tensor:
        """fc_p's input: p, then sin and cos of 2^k pi v for k < fourier_levels (fp32 arguments)."""
        if not self.fourier_levels:
            return p
        freq = math.pi * 2.0 ** torch.arange(self.fourier_levels, device=p.device, dtype=torch.float32)
        angle = (p.float() / (1 + self.padding)).unsqueeze(-1) * freq  # (B, T, 3, L)
        return torch.cat([p, angle.sin().flatten(2).to(p.dtype), angle.cos().flatten(2).to(p.dtype)], dim=-1)

    def _closure(self, c: torch.Tensor, z: torch.Tensor | None, precision: str):
        if self.training:
            raise RuntimeError("the eval closures need eval mode: call model.eval() first")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        w = self.fc_p.weight
        c = c.to(w)
        z = None if z is None else z.to(w)
        self._check(w.new_zeros(c.shape[0], 0, self.dim), z, c)
        low = precision == "bf16"

        def run(p: torch.Tensor) -> torch.Tensor:
            p = p.to(device=w.device, dtype=w.dtype)
            # bf16: the matmuls under autocast, the plane sampling (coordinates) in fp32
            with torch.autocast(w.device.type, dtype=torch.bfloat16, enabled=low):
                return self.forward(p, z, c).float()
        return run, c.shape[0]

    def make_eval_fn(self, c: torch.Tensor, z: torch.Tensor | None = None, *, chunk_points: int | None = None,
                     precision: str = "fp32", batched: bool | None = None):
        """fn(p (B, N, 3)) -> logits (B, N) under inference mode, `chunk_points` points per object
        at a time (default 65,536; results do not depend on it). `batched` is accepted for the
        interface of `OccupancyDecoder.make_eval_fn`: every call is batched over the objects."""
        run, B = self._closure(c, z, precision)
        step = chunk_points or 1 << 16

        @torch.inference_mode()
        def eval_fn(p: torch.Tensor) -> torch.Tensor:
            if p.dim() != 3 or p.shape[0] != B or p.shape[2] != self.dim:
                raise ValueError(f"p must be ({B}, N, {self.dim}), got {tuple(p.shape)}")
            if p.shape[1] == 0:
                return p.new_empty(B, 0, dtype=torch.float32)
            return torch.cat([run(p[:, i:i + step]) for i in range(0, p.shape[1], step)], dim=1)
        return eval_fn

    def make_field_fn(self, c: torch.Tensor, z: torch.Tensor | None = None, *, precision: str = "fp32"):
        """Differentiable fn(p (1, N, 3)) -> logits (1, N) for refinement and vertex normals."""
        run, _ = self._closure(c, z, precision)
        return run

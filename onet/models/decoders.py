"""Occupancy decoders f(p, z, c) -> logits, and their fast evaluation path.

All decoders are one class, `OccupancyDecoder`, whose variants are parameters
(`norm`, `residual`); the registry names are thin presets of it:

- `cbn_resnet` (default, DESIGN §5): fc_p 3 -> H per point (+ fc_z(z) when
  z_dim > 0), `n_blocks` pre-activation ResNet blocks
  (CBN, ReLU, linear H, CBN, ReLU, linear H, skip), a final CBN, ReLU and a
  linear H -> 1.
- `batchnorm` ("no CBN" ablation): plain affine batch norm everywhere, c
  added to the point features through a linear c_dim -> H (like z).
- `cbn_noresnet` ("no ResNet blocks" ablation): each ResNet block is replaced
  by one plain linear block (CBN, ReLU, linear H) without a skip connection;
  so `n_blocks` hidden linear layers and `n_blocks + 1` CBNs. This is the
  paper's wording ("we remove all ResNet blocks and replace them with linear
  blocks") and what the reference implementation's no-ResNet decoder does.
- `simple` (unconditional model): no normalisation, c (if any) and z added
  as features, fully connected pre-activation residual blocks (ReLU, linear,
  ReLU, linear, skip) -- the plain MLP decoder of the reference code.

Point features are channels-last (B, T, H) throughout.

Fast path. In eval mode every normalisation is a per-object affine map
x * s_b + t_b, and `relu(x * s + t) @ W + b` can be rewritten exactly as
`clamp(x, lo, hi) @ W' + bias` with W' = diag(s_b) W per object (see `_fold`).
`make_eval_fn` precomputes these per-object matrices and biases once per
batch of objects (including the z / c feature contributions), so that each
ResNet block costs two matmuls and two in-place clamps over a
(n, H) buffer -- no normalisation, bias or ReLU passes -- processing one
object and a cache-sized chunk of its points at a time.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from onet.models.layers import NORMS

EvalFn = Callable[[torch.Tensor], torch.Tensor]

# points per chunk and per CPU thread in the fast path: the three (points, H)
# float32 buffers then stay in the CPU caches while each thread
# still gets a matmul block big enough to run near peak (1024 measured best
# single-threaded; bigger chunks cost up to ~15%)
_CPU_CHUNK_POINTS_PER_THREAD = 1024
_CUDA_CHUNK_POINTS = 1 << 18


class DecoderBlock(nn.Module):
    """One decoder block on (B, T, H) point features conditioned on c (B, c_dim).

    residual=True:  x + fc_1(relu(norm_1(fc_0(relu(norm_0(x, c))), c)))  (fc_1 starts at 0)
    residual=False: fc_0(relu(norm_0(x, c)))
    """

    def __init__(self, c_dim: int, hidden_size: int, *, norm: str, residual: bool):
        super().__init__()
        norm_cls = NORMS[norm]
        self.residual = residual
        self.norm_0 = norm_cls(c_dim, hidden_size)
        self.fc_0 = nn.Linear(hidden_size, hidden_size)
        if residual:
            self.norm_1 = norm_cls(c_dim, hidden_size)
            self.fc_1 = nn.Linear(hidden_size, hidden_size)
            nn.init.zeros_(self.fc_1.weight)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        net = self.fc_0(F.relu(self.norm_0(x, c)))
        if not self.residual:
            return net
        return x + self.fc_1(F.relu(self.norm_1(net, c)))


class OccupancyDecoder(nn.Module):
    """Occupancy decoder f(p, z, c) -> logits (see the module docstring).

    Args:
        dim: point dimension (3).
        z_dim: latent size (0: no latent code).
        c_dim: observation code size (0: unconditional; needs norm != 'cbn').
        hidden_size: feature size H of every hidden layer.
        n_blocks: number of decoder blocks.
        norm: 'cbn' (conditional batch norm), 'bn' (plain batch norm, c fed as a
            feature) or 'none' (no normalisation, c fed as a feature).
        residual: ResNet blocks with two linears and a skip, or plain linear blocks.
    """

    def __init__(
        self,
        dim: int = 3,
        z_dim: int = 0,
        c_dim: int = 256,
        hidden_size: int = 256,
        n_blocks: int = 5,
        *,
        norm: str = "cbn",
        residual: bool = True,
    ):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"unknown norm {norm!r}; valid: {sorted(NORMS)}")
        if norm == "cbn" and c_dim <= 0:
            raise ValueError(
                f"a conditional-batch-norm decoder needs c_dim > 0, got c_dim={c_dim}; "
                "use decoder 'simple' (or 'batchnorm') for an unconditional model"
            )
        if n_blocks < 0 or hidden_size <= 0 or dim <= 0 or z_dim < 0 or c_dim < 0:
            raise ValueError(
                f"invalid decoder sizes: dim={dim} z_dim={z_dim} c_dim={c_dim} "
                f"hidden_size={hidden_size} n_blocks={n_blocks}"
            )
        self.dim = dim
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.hidden_size = hidden_size
        self.norm = norm
        self.residual = residual

        self.fc_p = nn.Linear(dim, hidden_size)
        self.fc_z = nn.Linear(z_dim, hidden_size) if z_dim > 0 else None
        # without CBN, c enters the network as a feature added to every point
        self.fc_c = nn.Linear(c_dim, hidden_size) if (norm != "cbn" and c_dim > 0) else None
        self.blocks = nn.ModuleList(
            DecoderBlock(c_dim, hidden_size, norm=norm, residual=residual) for _ in range(n_blocks)
        )
        self.norm_out = NORMS[norm](c_dim, hidden_size)
        self.fc_out = nn.Linear(hidden_size, 1)

    def _check(self, p: torch.Tensor, z: torch.Tensor | None, c: torch.Tensor | None) -> None:
        if p.dim() != 3 or p.shape[2] != self.dim:
            raise ValueError(f"p must be (B, T, {self.dim}), got {tuple(p.shape)}")
        B = p.shape[0]
        if self.z_dim > 0 and (z is None or tuple(z.shape) != (B, self.z_dim)):
            raise ValueError(f"z must be ({B}, {self.z_dim}), got {None if z is None else tuple(z.shape)}")
        if self.c_dim > 0 and (c is None or tuple(c.shape) != (B, self.c_dim)):
            raise ValueError(f"c must be ({B}, {self.c_dim}), got {None if c is None else tuple(c.shape)}")

    def _offset(self, z: torch.Tensor | None, c: torch.Tensor | None) -> torch.Tensor | None:
        """Per-object feature added to every point: fc_z(z) (+ fc_c(c)). Returns (B, H) or None."""
        off = None
        if self.fc_z is not None:
            off = self.fc_z(z)
        if self.fc_c is not None:
            off = self.fc_c(c) if off is None else off + self.fc_c(c)
        return off

    def forward(self, p: torch.Tensor, z: torch.Tensor | None, c: torch.Tensor | None) -> torch.Tensor:
        """p: (B, T, dim); z: (B, z_dim) or None; c: (B, c_dim) or None. Returns logits (B, T)."""
        self._check(p, z, c)
        B = p.shape[0]
        if c is None:
            c = p.new_zeros(B, 0)
        net = self.fc_p(p)  # (B, T, H)
        off = self._offset(z, c)
        if off is not None:
            net = net + off.unsqueeze(1)
        for block in self.blocks:
            net = block(net, c)
        out = self.fc_out(F.relu(self.norm_out(net, c)))  # (B, T, 1)
        return out.squeeze(2)

    def _folded(self, c: torch.Tensor, z: torch.Tensor | None):
        """Eval-mode network with every normalisation folded into the following linear (`_fold`).

        c: (B, c_dim); z: (B, z_dim) or None. Returns ops — per block ('res', lo0, hi0, W0,
        lo1, hi1, W1) or ('lin', lo, hi, W), batched over objects — and the output layer's
        lo, hi, W (B, H, 1), bias (B, 1), and fc_p's transposed weight (dim, H); fc_p's bias and
        the z/c offsets are folded into the ops.
        """
        # pending per-object bias of the residual stream, not yet added to h
        off = self.fc_p.bias.expand(c.shape[0], -1)
        extra = self._offset(z, c)
        if extra is not None:
            off = off + extra
        ops = []
        for block in self.blocks:
            s, t = block.norm_0.eval_affine(c)
            lo0, hi0, W0, b0 = _fold(s, t + off * s, block.fc_0.weight.t(), block.fc_0.bias)
            if block.residual:
                s, t = block.norm_1.eval_affine(c)
                lo1, hi1, W1, b1 = _fold(s, t + b0 * s, block.fc_1.weight.t(), block.fc_1.bias)
                ops.append(("res", lo0, hi0, W0, lo1, hi1, W1))
                off = off + b1
            else:
                ops.append(("lin", lo0, hi0, W0))
                off = b0
        s, t = self.norm_out.eval_affine(c)
        lo_out, hi_out, W_out, b_out = _fold(s, t + off * s, self.fc_out.weight.t(), self.fc_out.bias)
        return ops, lo_out, hi_out, W_out, b_out, self.fc_p.weight.t().contiguous()

    @torch.inference_mode()
    def make_eval_fn(
        self, c: torch.Tensor | None, z: torch.Tensor | None = None, *, chunk_points: int | None = None
    ) -> EvalFn:
        """Fast eval-mode evaluation for a fixed batch of objects.

        Args:
            c: (B, c_dim) codes (None or (B, 0) when c_dim == 0).
            z: (B, z_dim) latents (None when z_dim == 0).
            chunk_points: points of one object processed per step (default:
                cache-sized on CPU, large on CUDA). Results do not depend on it.
        Returns:
            fn(p (B, N, dim)) -> logits (B, N), an inference-mode tensor; equal to
            `forward(p, z, c)` in eval mode up to float rounding. The closure holds a
            snapshot of the weights: make a new one after the weights change.
        """
        if self.training:
            raise RuntimeError("make_eval_fn needs eval mode (running statistics): call model.eval() first")
        w = self.fc_p.weight
        if c is None:
            if self.c_dim > 0:
                raise ValueError(f"c must be (B, {self.c_dim}), got None")
            B = z.shape[0] if z is not None else 1
            c = w.new_zeros(B, 0)
        B = c.shape[0]
        self._check(w.new_zeros(B, 0, self.dim), z, c)
        c = c.to(w)
        z = None if z is None else z.to(w)

        ops, lo_out, hi_out, w_out, b_out, WpT = self._folded(c, z)
        w_out = w_out.squeeze(2).contiguous()  # (B, H)
        H = self.hidden_size
        if chunk_points is None:
            if w.device.type == "cuda":
                chunk_points = _CUDA_CHUNK_POINTS
            else:
                chunk_points = _CPU_CHUNK_POINTS_PER_THREAD * max(1, torch.get_num_threads())
        dim = self.dim

        @torch.inference_mode()
        def eval_fn(p: torch.Tensor) -> torch.Tensor:
            """p: (B, N, dim) points. Returns logits (B, N)."""
            if p.dim() != 3 or p.shape[0] != B or p.shape[2] != dim:
                raise ValueError(f"p must be ({B}, N, {dim}), got {tuple(p.shape)}")
            p = p.to(device=w.device, dtype=w.dtype).contiguous()
            N = p.shape[1]
            logits = p.new_empty(B, N)
            n_chunk = max(1, min(N, chunk_points))
            # flat storage reused by every chunk; the views keep (n, H) contiguous
            bufs = [p.new_empty(n_chunk * H) for _ in range(3)]
            # one object at a time: plain 2D matmuls with per-object weights run
            # closer to peak on CPU than batched bmm over small per-object blocks
            for b in range(B):
                for i in range(0, N, n_chunk):
                    n = min(n_chunk, N - i)
                    h, a, y = (buf[: n * H].view(n, H) for buf in bufs)
                    torch.mm(p[b, i : i + n], WpT, out=h)  # (n, H); its bias is pending in the ops
                    for op in ops:
                        if op[0] == "res":
                            _, lo0, hi0, W0, lo1, hi1, W1 = op
                            torch.clamp(h, lo0[b], hi0[b], out=a)
                            torch.mm(a, W0[b], out=y)
                            y.clamp_(lo1[b], hi1[b])
                            h.addmm_(y, W1[b])
                        else:
                            _, lo0, hi0, W0 = op
                            torch.clamp(h, lo0[b], hi0[b], out=a)
                            torch.mm(a, W0[b], out=h)
                    torch.clamp(h, lo_out[b], hi_out[b], out=a)
                    torch.addmv(b_out[b], a, w_out[b], out=logits[b, i : i + n])
            return logits

        return eval_fn


    def make_field_fn(self, c: torch.Tensor | None, z: torch.Tensor | None = None) -> EvalFn:
        """Differentiable eval-mode field of ONE object, for refinement and normals.

        Args:
            c: (1, c_dim) code (None or (1, 0) when c_dim == 0).
            z: (1, z_dim) latent (None when z_dim == 0).
        Returns:
            fn(p (1, N, dim)) -> logits (1, N), equal to `forward(p, z, c)` in eval
            mode up to float rounding and differentiable w.r.t. p (double backprop
            included). Like `make_eval_fn` it folds every normalisation into the
            following linear once (`_fold`), so each block is clamps and matmuls;
            the folded weights are detached constants (no gradients for the
            network's parameters), a snapshot: make a new fn after the weights change.
        """
        if self.training:
            raise RuntimeError("make_field_fn needs eval mode (running statistics): call model.eval() first")
        w = self.fc_p.weight
        if c is None:
            if self.c_dim > 0:
                raise ValueError(f"c must be (1, {self.c_dim}), got None")
            c = w.new_zeros(1, 0)
        if c.shape[0] != 1:
            raise ValueError(f"make_field_fn is for one object: c must be (1, {self.c_dim}), got {tuple(c.shape)}")
        self._check(w.new_zeros(1, 0, self.dim), z, c)
        # plain (not inference) tensors even if called under inference_mode, so
        # that autograd can save them as constants of the graph
        with torch.inference_mode(False), torch.no_grad():
            z = None if z is None else z.to(w).clone()
            ops, lo_out, hi_out, W_out, b_out, WpT = self._folded(c.to(w).clone(), z)
            ops = [(op[0], *(t[0] for t in op[1:])) for op in ops]  # drop the batch dim: all 2D
            lo_out, hi_out, W_out, b_out = lo_out[0], hi_out[0], W_out[0].contiguous(), b_out[0]  # W_out (H, 1)
        dim = self.dim

        def field_fn(p: torch.Tensor) -> torch.Tensor:
            """p: (1, N, dim) points. Returns logits (1, N), differentiable w.r.t. p."""
            if p.dim() != 3 or p.shape[0] != 1 or p.shape[2] != dim:
                raise ValueError(f"p must be (1, N, {dim}), got {tuple(p.shape)}")
            h = p[0].to(device=w.device, dtype=w.dtype) @ WpT  # (N, H)
            for op in ops:
                if op[0] == "res":
                    _, lo0, hi0, W0, lo1, hi1, W1 = op
                    y = _clamp(_clamp(h, lo0, hi0) @ W0, lo1, hi1)
                    h = torch.addmm(h, y, W1)
                else:
                    _, lo0, hi0, W0 = op
                    h = _clamp(h, lo0, hi0) @ W0
            out = torch.addmm(b_out, _clamp(h, lo_out, hi_out), W_out)  # (N, 1)
            return out.view(1, -1)

        return field_fn


class _Clamp(torch.autograd.Function):
    """clamp(x, lo, hi) with constant bounds, differentiable w.r.t. x to any order.

    The pass-through mask is computed once in the forward and each backward is one
    `where` on it (itself differentiable, so double backprop works); autograd's own
    clamp backward recomputes the mask with four elementwise passes every time.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        out = torch.clamp(x, lo, hi)
        ctx.save_for_backward(out == x)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (mask,) = ctx.saved_tensors
        return torch.where(mask, grad, 0.0), None, None


_clamp = _Clamp.apply


def _fold(
    s: torch.Tensor, t: torch.Tensor, wT: torch.Tensor, b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rewrite relu(x * s + t) @ wT + b as clamp(x, lo, hi) @ W + bias, exactly.

    Per channel with m = -t / s: relu(x*s + t) = s * (max(x, m) - m) when s > 0 and
    s * (min(x, m) - m) when s < 0, i.e. s * clamp(x, lo, hi) + t. A channel with
    s = 0 (or a non-finite m) is the constant relu(t): its row of W is zeroed and
    relu(t) goes into the bias.

    Args:
        s, t: (B, H_in) per-object affine map; wT: (H_in, H_out); b: (H_out,).
    Returns:
        lo, hi: (B, 1, H_in); W: (B, H_in, H_out); bias: (B, H_out).
    """
    m = -t / s
    ok = torch.isfinite(m)
    inf = torch.full_like(m, float("inf"))
    lo = torch.where(ok & (s > 0), m, -inf)
    hi = torch.where(ok & (s < 0), m, inf)
    s_eff = torch.where(ok, s, torch.zeros_like(s))
    const = torch.where(ok, t, F.relu(t))
    W = (s_eff.unsqueeze(2) * wT.unsqueeze(0)).contiguous()  # (B, H_in, H_out)
    bias = const @ wT + b
    return lo.unsqueeze(1), hi.unsqueeze(1), W, bias


class CBNResnetDecoder(OccupancyDecoder):
    """Default decoder: CBN ResNet (DESIGN §5)."""

    def __init__(self, dim: int = 3, z_dim: int = 0, c_dim: int = 256, hidden_size: int = 256, n_blocks: int = 5):
        super().__init__(dim, z_dim, c_dim, hidden_size, n_blocks, norm="cbn", residual=True)


class BatchNormDecoder(OccupancyDecoder):
    """"No CBN" ablation: plain batch norm, c added as a feature."""

    def __init__(self, dim: int = 3, z_dim: int = 0, c_dim: int = 256, hidden_size: int = 256, n_blocks: int = 5):
        super().__init__(dim, z_dim, c_dim, hidden_size, n_blocks, norm="bn", residual=True)


class CBNNoResnetDecoder(OccupancyDecoder):
    """"No ResNet blocks" ablation: n_blocks linear blocks (CBN, ReLU, linear), no skips."""

    def __init__(self, dim: int = 3, z_dim: int = 0, c_dim: int = 256, hidden_size: int = 256, n_blocks: int = 5):
        super().__init__(dim, z_dim, c_dim, hidden_size, n_blocks, norm="cbn", residual=False)


class SimpleDecoder(OccupancyDecoder):
    """Unconditional-model decoder: no normalisation, c and z as features, residual FC blocks."""

    def __init__(self, dim: int = 3, z_dim: int = 0, c_dim: int = 0, hidden_size: int = 256, n_blocks: int = 5):
        super().__init__(dim, z_dim, c_dim, hidden_size, n_blocks, norm="none", residual=True)

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

Fused path (CPU training, and CPU forwards without autograd). `forward` runs the trunk --
every normalisation, ReLU and linear after fc_p -- as one chunked autograd
Function (`fused.py`) with the same values, gradients and running-statistics
updates as the plain modules, near the matmul peak; under CPU bf16 autocast
it feeds the matmuls bf16 while statistics stay fp32. Set `fast_path = False`
on a decoder for the plain modules (they also run on CUDA, with
SyncBatchNorm, and under fp16 autocast).

Fast eval path. In eval mode every normalisation is a per-object affine map
x * s_b + t_b, and `relu(x * s + t) @ W + b` can be rewritten exactly as
`clamp(x, lo, hi) @ W' + bias` with W' = diag(s_b) W per object (see `_fold`).
`make_eval_fn` precomputes these per-object matrices and biases once per
batch of objects (including the z / c feature contributions), so that each
ResNet block costs two matmuls and two in-place clamps over a
(n, H) buffer -- no normalisation, bias or ReLU passes -- processing one
object and a cache-sized chunk of its points at a time.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from onet.models import fused
from onet.models.layers import NORMS

EvalFn = Callable[[torch.Tensor], torch.Tensor]

# points per chunk and per CPU thread in the fast path: the three (points, H)
# float32 buffers then stay in the CPU caches while each thread
# still gets a matmul block big enough to run near peak (1024 measured best
# single-threaded; bigger chunks cost up to ~15%)
_CPU_CHUNK_POINTS_PER_THREAD = 1024
# the same for `value_and_grad`, which keeps every ReLU's output of its chunk for the backward
# pass (11 (points, H) tensors of the thesis decoder): smaller chunks keep them in cache
_CPU_GRAD_CHUNK_POINTS_PER_THREAD = 768
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

    # the fused trunk (fused.py) where it applies; False: always the plain modules
    fast_path: bool = True
    # points per chunk of the fused trunk (None: cache-sized); results do not depend on it
    fused_chunk_rows: int | None = None

    def _units(self, c: torch.Tensor) -> tuple[list[fused.Unit], list[str]]:
        """The trunk as fused units (c: (B, c_dim)) and its block layout ('res' / 'lin')."""
        units = []

        def add(norm, fc):
            gamma, beta = norm.affine(c)
            units.append(fused.Unit(gamma, beta, norm.stats_module, fc.weight, fc.bias))

        for block in self.blocks:
            add(block.norm_0, block.fc_0)
            if block.residual:
                add(block.norm_1, block.fc_1)
        add(self.norm_out, self.fc_out)
        return units, ["res" if self.residual else "lin"] * len(self.blocks)

    def forward(self, p: torch.Tensor, z: torch.Tensor | None, c: torch.Tensor | None) -> torch.Tensor:
        """p: (B, T, dim); z: (B, z_dim) or None; c: (B, c_dim) or None. Returns logits (B, T)."""
        self._check(p, z, c)
        B = p.shape[0]
        if c is None:
            c = p.new_zeros(B, 0)
        # fused in training and without autograd; an eval-mode forward with autograd (gradients
        # w.r.t. the points, double backprop included) keeps the plain, twice-differentiable modules
        # (under torch.compile, train.compile, the plain modules: they are what it traces and fuses)
        use_fused = self.fast_path and (self.training or not torch.is_grad_enabled()) \
            and not torch.compiler.is_compiling()
        mm_dtype = fused.autocast_mm_dtype(p.device.type) if use_fused else False
        if mm_dtype is not False and fused.supported(self, p):
            w = self.fc_p.weight
            with torch.autocast(p.device.type, enabled=False):
                # fc_p and the offsets in full precision even under autocast: bf16 point coordinates are coarse
                net = fused.point_linear(p.to(w.dtype), self.fc_p)  # (B, T, H)
                off = self._offset(None if z is None else z.to(w.dtype), c.to(w.dtype))
                if off is not None:
                    net = net + off.unsqueeze(1)
                units, layout = self._units(c.to(w.dtype))
                return fused.trunk(units, layout, net, mm_dtype=mm_dtype, chunk_rows=self.fused_chunk_rows)
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
        self, c: torch.Tensor | None, z: torch.Tensor | None = None, *, chunk_points: int | None = None,
        precision: str = "fp32", batched: bool | None = None,
    ) -> EvalFn:
        """Fast eval-mode evaluation for a fixed batch of objects.

        Args:
            c: (B, c_dim) codes (None or (B, 0) when c_dim == 0).
            z: (B, z_dim) latents (None when z_dim == 0).
            chunk_points: points processed per step (default: cache-sized on CPU,
                large on CUDA); per object, or over all objects when batched.
                Results do not depend on it.
            precision: "fp32", or "bf16": bf16 inputs to the hidden matmuls (fp32
                accumulation), with the residual stream, fc_p and the output layer in fp32.
            batched: one batched matmul per layer over all B objects (fewest kernel
                launches: the default on CUDA), or one object at a time (plain 2D
                matmuls on cache-sized chunks run closer to peak: the default on CPU).
        Returns:
            fn(p (B, N, dim)) -> logits (B, N) float32, an inference-mode tensor; equal
            to `forward(p, z, c)` in eval mode up to float rounding (fp32). The closure
            holds a snapshot of the weights: make a new one after the weights change.
        """
        if self.training:
            raise RuntimeError("make_eval_fn needs eval mode (running statistics): call model.eval() first")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
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
        w_out = w_out.contiguous()  # (B, H, 1)
        mm_dtype = torch.bfloat16 if precision == "bf16" else w.dtype
        low = mm_dtype != w.dtype
        if low:  # centred inputs (`_centered`), the hidden weights in bf16, once
            ops, lo_out, hi_out, w_out, b_out = _centered(ops, lo_out, hi_out, w_out, b_out, mm_dtype)
        H = self.hidden_size
        cuda = w.device.type == "cuda"
        batched = cuda if batched is None else batched
        # bf16 on the CPU, one object at a time: each elementwise step one compiled pass (fused_kernels.c)
        kernels = fused.native() if low and w.dtype == torch.float32 and not batched and not cuda else None
        if kernels is not None:  # which take contiguous per-channel vectors, and x - m as x + (-m) (exact)
            ops = [(op[0], -op[1], *(t.contiguous() for t in op[2:])) for op in ops]
        if chunk_points is None:
            if cuda:
                chunk_points = _CUDA_CHUNK_POINTS
            else:
                chunk_points = _CPU_CHUNK_POINTS_PER_THREAD * max(1, torch.get_num_threads())
        dim = self.dim

        def layers(h, a, y, y2, sel):
            """Hidden layers and output on h (rows, H) or (B, rows, H); sel picks the per-object
            tensors (one object's 2D slices, or all of them for the batched matmuls). bf16: y2 is
            an fp32 scratch buffer and the ops are `_centered`'s."""
            mm = torch.bmm if h.dim() == 3 else torch.mm
            for op in ops:
                if kernels is not None:  # the torch ops below in one pass each
                    kernels.bf16_clamp(h, sel(op[1]), sel(op[2]), sel(op[3]), a)  # op[1]: -m0
                    if op[0] == "res":
                        _, _, _, _, W0, q1, lo1, hi1, W1 = op
                        kernels.bf16_clamp(mm(a, sel(W0), out=y), sel(q1), sel(lo1), sel(hi1), a)
                        kernels.bf16_into(h, mm(a, sel(W1), out=y), replace=False)
                    else:
                        kernels.bf16_into(h, mm(a, sel(op[4]), out=y), replace=True)
                elif low:  # the residual stream and the centring stay fp32; matmul inputs bf16
                    torch.sub(h, sel(op[1]), out=y2)
                    torch.clamp(y2, sel(op[2]), sel(op[3]), out=a)
                    if op[0] == "res":
                        _, _, _, _, W0, q1, lo1, hi1, W1 = op
                        torch.add(mm(a, sel(W0), out=y), sel(q1), out=y2)
                        torch.clamp(y2, sel(lo1), sel(hi1), out=a)
                        h.add_(mm(a, sel(W1), out=y))
                    else:
                        h.copy_(mm(a, sel(op[4]), out=y))
                elif op[0] == "res":
                    _, lo0, hi0, W0, lo1, hi1, W1 = op
                    torch.clamp(h, sel(lo0), sel(hi0), out=a)
                    mm(a, sel(W0), out=y)
                    y.clamp_(sel(lo1), sel(hi1))
                    h.baddbmm_(y, sel(W1)) if h.dim() == 3 else h.addmm_(y, sel(W1))
                else:
                    _, lo0, hi0, W0 = op
                    torch.clamp(h, sel(lo0), sel(hi0), out=a)
                    mm(a, sel(W0), out=h)
            torch.clamp(h, sel(lo_out), sel(hi_out), out=h)  # fp32 output layer
            return mm(h, sel(w_out))  # (rows, 1) or (B, rows, 1)

        @torch.inference_mode()
        def eval_fn(p: torch.Tensor) -> torch.Tensor:
            """p: (B, N, dim) points. Returns logits (B, N)."""
            if p.dim() != 3 or p.shape[0] != B or p.shape[2] != dim:
                raise ValueError(f"p must be ({B}, N, {dim}), got {tuple(p.shape)}")
            p = p.to(device=w.device, dtype=w.dtype).contiguous()
            N = p.shape[1]
            logits = p.new_empty(B, N)
            if N == 0:
                return logits
            rows = max(1, min(N, chunk_points // B if batched else chunk_points))
            n_el = B * rows * H if batched else rows * H
            # flat storage reused by every chunk; views keep each chunk contiguous
            h_buf = p.new_empty(n_el)
            a_buf, y_buf = (p.new_empty(n_el, dtype=mm_dtype) for _ in range(2))
            y2_buf = p.new_empty(n_el)  # fp32: the centring scratch of the bf16 path (unused in fp32)
            if batched:
                for i in range(0, N, rows):
                    n = min(rows, N - i)
                    h, a, y, y2 = (buf[: B * n * H].view(B, n, H) for buf in (h_buf, a_buf, y_buf, y2_buf))
                    torch.bmm(p[:, i:i + n], WpT.expand(B, -1, -1), out=h)  # its bias is pending in the ops
                    out = layers(h, a, y, y2, lambda t: t)  # (B, n, 1)
                    torch.add(out.squeeze(2), b_out, out=logits[:, i:i + n])
                return logits
            for b in range(B):
                for i in range(0, N, rows):
                    n = min(rows, N - i)
                    h, a, y, y2 = (buf[: n * H].view(n, H) for buf in (h_buf, a_buf, y_buf, y2_buf))
                    torch.mm(p[b, i:i + n], WpT, out=h)  # (n, H); its bias is pending in the ops
                    out = layers(h, a, y, y2, lambda t, b=b: t[b])  # (n, 1)
                    torch.add(out.squeeze(1), b_out[b], out=logits[b, i:i + n])
            return logits

        return eval_fn

    def make_field_fn(self, c: torch.Tensor | None, z: torch.Tensor | None = None, *,
                      precision: str = "fp32") -> EvalFn:
        """Differentiable eval-mode field of ONE object, for refinement and normals.

        Args:
            c: (1, c_dim) code (None or (1, 0) when c_dim == 0).
            z: (1, z_dim) latent (None when z_dim == 0).
            precision: "fp32", or "bf16": bf16 inputs to the hidden matmuls (forward and
                backward), the residual stream, fc_p and the output layer in fp32.
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
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
        self._check(w.new_zeros(1, 0, self.dim), z, c)
        # plain (not inference) tensors even if called under inference_mode, so
        # that autograd can save them as constants of the graph
        with torch.inference_mode(False), torch.no_grad():
            z = None if z is None else z.to(w).clone()
            folded = self._folded(c.to(w).clone(), z)
            # the same network for `value_and_grad` (made here: under inference mode too, plain tensors)
            relu_net = _relu_form(folded, torch.bfloat16 if precision == "bf16" else w.dtype)
            ops, lo_out, hi_out, W_out, b_out, WpT = folded
            if precision == "bf16":  # centred inputs and bf16 hidden weights, as in make_eval_fn
                ops, lo_out, hi_out, W_out, b_out = _centered(ops, lo_out, hi_out, W_out, b_out, torch.bfloat16)
            ops = [(op[0], *(t[0] for t in op[1:])) for op in ops]  # drop the batch dim: all 2D
            lo_out, hi_out, W_out, b_out = lo_out[0], hi_out[0], W_out[0].contiguous(), b_out[0]  # W_out (H, 1)
        dim = self.dim

        def mm(x: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
            """x @ W in W's dtype (bf16 inputs when W is bf16); the result in x's dtype."""
            return (x.to(W.dtype) @ W).to(x.dtype)

        def field_fn(p: torch.Tensor) -> torch.Tensor:
            """p: (1, N, dim) points. Returns logits (1, N), differentiable w.r.t. p."""
            if p.dim() != 3 or p.shape[0] != 1 or p.shape[2] != dim:
                raise ValueError(f"p must be (1, N, {dim}), got {tuple(p.shape)}")
            h = p[0].to(device=w.device, dtype=w.dtype) @ WpT  # (N, H)
            for op in ops:
                if precision == "bf16":  # `_centered`'s ops
                    a = _clamp(h - op[1], op[2], op[3])
                    if op[0] == "res":
                        _, _, _, _, W0, q1, lo1, hi1, W1 = op
                        h = h + mm(_clamp(mm(a, W0) + q1, lo1, hi1), W1)
                    else:
                        h = mm(a, op[4])
                elif op[0] == "res":
                    _, lo0, hi0, W0, lo1, hi1, W1 = op
                    y = _clamp(mm(_clamp(h, lo0, hi0), W0), lo1, hi1)
                    h = torch.addmm(h, y, W1)
                else:
                    _, lo0, hi0, W0 = op
                    h = mm(_clamp(h, lo0, hi0), W0)
            out = torch.addmm(b_out, _clamp(h, lo_out, hi_out), W_out)  # (N, 1)
            return out.view(1, -1)

        rows = _CUDA_CHUNK_POINTS if w.device.type == "cuda" else \
            _CPU_GRAD_CHUNK_POINTS_PER_THREAD * max(1, torch.get_num_threads())

        def value_and_grad(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """p: (N, dim) points -> logits (N,) and their gradient w.r.t. p (N, dim), detached.

            The function of `field_fn` and its derivative, without autograd: `_relu_form`'s
            network forward, keeping each ReLU's output, then the transposed matmuls back,
            one cache-sized chunk of points at a time (a point's gradient depends on that point
            alone), so no activations of all N points are held.
            """
            if p.dim() != 2 or p.shape[1] != dim:
                raise ValueError(f"p must be (N, {dim}), got {tuple(p.shape)}")
            p = p.to(device=w.device, dtype=w.dtype)
            logits, grad = p.new_empty(p.shape[0]), p.new_empty(p.shape[0], dim)
            n = p.shape[0]
            # equal chunks of at most `rows` points: no small last one
            size = max(1, math.ceil(n / max(1, math.ceil(n / rows))))
            with torch.no_grad():
                for i in range(0, n, size):
                    relu_net(p[i:i + size], logits[i:i + size], grad[i:i + size])
            return logits, grad

        # clamps and matmuls: the gradient w.r.t. p is piecewise constant, which lets
        # refinement skip double backprop (onet.generation.refine._first_order_loss)
        field_fn.piecewise_linear = True
        field_fn.value_and_grad = value_and_grad
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


def _thresholds(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A clamp's ReLU threshold m per channel (its finite bound, else 0) and its bounds shifted
    by m: clamp(x, lo, hi) = m + clamp(x - m, lo - m, hi - m), the new bounds in {0, +-inf}."""
    m = torch.where(torch.isfinite(lo), lo, torch.where(torch.isfinite(hi), hi, torch.zeros_like(lo)))
    inf = torch.full_like(lo, float("inf"))
    return m, torch.where(torch.isfinite(lo), 0.0, -inf), torch.where(torch.isfinite(hi), 0.0, inf)


def _centered(ops, lo_out, hi_out, W_out, b_out, mm_dtype: torch.dtype):
    """The folded network of `_folded` rewritten for bf16 matmul inputs: each clamp's input is
    shifted by its ReLU threshold m, so what is rounded to bf16 is clamp(x, lo, hi) - m =
    relu(x * s + t) / s, the activation itself (what autocast rounds), not x, whose per-channel
    offset can dwarf its spread (rounding x measured 40x the logit error of autocast).

    Exact in real arithmetic: clamp(x, lo, hi) @ W = (clamp(x - m, lo - m, hi - m)) @ W + m @ W,
    with lo - m, hi - m in {0, +-inf}. The constant m @ W terms are folded forward, so the
    residual stream h is stored minus a per-object constant K (shifting later thresholds).
    Returns ops ('res', m0, lo0, hi0, W0, q1, lo1, hi1, W1) / ('lin', m0, lo0, hi0, W0) to run as
        a = clamp(h - m0, lo0, hi0); y = clamp(a @ W0 + q1, lo1, hi1); h += y @ W1   (res)
        h = clamp(h - m0, lo0, hi0) @ W0                                            (lin)
    and the output layer's lo, hi, W, bias (`out = clamp(h, lo, hi) @ W + bias`). The hidden
    weights W0, W1 are returned in `mm_dtype` (the output layer stays in its own dtype).
    """
    K = torch.zeros_like(lo_out)  # (B, 1, H): h_true = h + K
    out = []
    for op in ops:
        m0, lo0, hi0 = _thresholds(op[1], op[2])
        W0 = op[3]
        k0 = torch.bmm(m0, W0)  # (B, 1, H)
        if op[0] == "res":
            m1, lo1, hi1 = _thresholds(op[4], op[5])
            out.append(("res", m0 - K, lo0, hi0, W0.to(mm_dtype), k0 - m1, lo1, hi1, op[6].to(mm_dtype)))
            K = K + torch.bmm(m1, op[6])
        else:
            out.append(("lin", m0 - K, lo0, hi0, W0.to(mm_dtype)))
            K = k0
    return out, lo_out - K, hi_out - K, W_out, b_out + torch.bmm(K, W_out).squeeze(2)


def _relu_form(folded: tuple, mm_dtype: torch.dtype):
    """One object's folded network (`OccupancyDecoder._folded`'s output, `_centered` in
    `mm_dtype`) with every clamp a ReLU, as fn(p (n, dim), logits_out (n,), grad_out (n, dim))
    writing f(p) and df/dp.

    After centring, each channel's clamp is relu(x) or -relu(-x) (or, on channels whose weight
    row `_fold` zeroed, the identity: any form will do). With s = -1 on the second kind and +1
    elsewhere, clamp(x) = s * relu(s * x), and the signs go into the weights: forward is
    x = s0 * (h - m0); a = relu(x); y = relu(a @ A0 + q1'); h += y @ A1, with A0 = s0^T W0 s1,
    A1 = s1^T W1, and the backward's masks are `threshold_backward` on the kept ReLU outputs:
    one cheap pass each, where comparing x with clamp(x) and masking with the bool result
    (autograd's way) are slow passes on a CPU. Exact in real arithmetic (the signs are +-1).
    In bf16 on a CPU with the compiled kernels (fused_kernels.c) each elementwise step, its
    dtype copies included, is one pass: refinement's 30 steps on 5,000 faces 1.30-1.48 s
    against 1.52-1.62 s on torch ops (thesis decoder, 2-core AMD EPYC Zen 4, alternating).
    """
    with torch.no_grad():
        ops, lo_out, hi_out, W_out, b_out, WpT = folded
        ops, lo_out, hi_out, W_out, b_out = _centered(ops, lo_out, hi_out, W_out, b_out, mm_dtype)
        m_out, _, hi_c = _thresholds(lo_out, hi_out)  # the output layer's clamp, centred here
        b_out = b_out + torch.bmm(m_out, W_out).squeeze(2)

        def sign(hi):  # -1 where the clamp is -relu(-x) (a finite upper bound, centred to 0)
            return torch.where(hi == 0, -1.0, 1.0).to(W_out)[0, 0]  # (H,)

        def signed(W, left, right):  # diag(left) W diag(right), in W's dtype (exact: signs)
            W = W[0].float()
            W = W * left[:, None] if left is not None else W
            return (W * right[None, :] if right is not None else W).to(mm_dtype).contiguous()

        blocks = []  # ("res", s0, shift, A0, q1', A1, A1^T, B0^T) / ("lin", s0, shift, A0, B0^T)
        for op in ops:
            s0 = sign(op[3])
            shift = -op[1][0, 0] * s0  # x = h * s0 + shift
            if op[0] == "res":
                _, _, _, _, W0, q1, _, hi1, W1 = op
                s1 = sign(hi1)
                A1 = signed(W1, s1, None)
                # B0 = (s0 A0)^T: the backward's mask commutes with s0, which goes into it
                blocks.append(("res", s0, shift, signed(W0, s0, s1), q1[0, 0] * s1, A1, A1.t().contiguous(),
                               signed(W0, None, s1).t().contiguous()))
            else:
                blocks.append(("lin", s0, shift, signed(op[4], s0, None), signed(op[4], None, None).t().contiguous()))
        s_out = sign(hi_c)
        out_shift = -m_out[0, 0] * s_out
        w_row = W_out[0, :, 0].contiguous()  # (H,)
        w_signed = w_row * s_out
        b_out = b_out[0]
        WpT = WpT.contiguous()
    dtype = W_out.dtype  # of the residual stream, the shifts and the output layer
    threshold_backward = torch.ops.aten.threshold_backward

    def run(p: torch.Tensor, logits: torch.Tensor, grad: torch.Tensor) -> None:
        h = p @ WpT  # (n, H): the residual stream
        kept = []  # each ReLU's output, in the matmul dtype
        for blk in blocks:
            a = torch.addcmul(blk[2], h, blk[1]).relu_().to(mm_dtype)
            if blk[0] == "res":
                _, _, _, A0, q1, A1, _, _ = blk
                y = (a @ A0).to(dtype).add_(q1).relu_().to(mm_dtype)
                h.add_((y @ A1).to(dtype))
                kept += [a, y]
            else:
                h = (a @ blk[3]).to(dtype)
                kept.append(a)
        a = torch.addcmul(out_shift, h, s_out).relu_()
        torch.addmv(b_out, a, w_signed, out=logits)
        g = threshold_backward(w_row.expand_as(a), a, 0)  # d logit / d h
        for blk in reversed(blocks):
            if blk[0] == "res":
                _, _, _, _, _, _, A1T, B0T = blk
                y, a = kept.pop(), kept.pop()
                gy = threshold_backward(g.to(mm_dtype) @ A1T, y, 0)
                g.add_(threshold_backward(gy @ B0T, a, 0).to(dtype))
            else:
                g = threshold_backward(g.to(mm_dtype) @ blk[4], kept.pop(), 0).to(dtype)
        torch.mm(g, WpT.t(), out=grad)

    kernels = fused.native() if mm_dtype == torch.bfloat16 and dtype == torch.float32 \
        and WpT.device.type == "cpu" else None
    if kernels is None:
        return run

    def vec(t: torch.Tensor) -> torch.Tensor:  # the compiled passes take contiguous float32 (H,) vectors
        return t.to(torch.float32).contiguous()

    blocks = [(blk[0], vec(blk[1]), vec(blk[2]), *blk[3:]) if blk[0] == "lin" else
              (blk[0], vec(blk[1]), vec(blk[2]), blk[3], vec(blk[4]), *blk[5:]) for blk in blocks]
    s_out, out_shift, w_signed, w_row = (vec(t) for t in (s_out, out_shift, w_signed, w_row))
    bias_out = float(b_out)
    ones = torch.ones_like(w_row)

    def run_compiled(p: torch.Tensor, logits: torch.Tensor, grad: torch.Tensor) -> None:
        """`run` in one pass per elementwise step, the bf16 products' dtype copies folded in."""
        h = p @ WpT
        n, H = h.shape
        m, m2 = (torch.empty(n, H, dtype=mm_dtype) for _ in range(2))  # products (bf16)
        kept = []
        for blk in blocks:
            a = torch.empty(n, H, dtype=mm_dtype)
            kernels.act(h, blk[1], blk[2], a, n)  # one object: its (H,) vectors
            if blk[0] == "res":
                _, _, _, A0, q1, A1, _, _ = blk
                y = torch.empty(n, H, dtype=mm_dtype)
                kernels.act(torch.mm(a, A0, out=m), ones, q1, y, n)  # relu(m * 1 + q1): exact
                kernels.bf16_into(h, torch.mm(y, A1, out=m), replace=False)
                kept += [a, y]
            else:
                kernels.bf16_into(h, torch.mm(a, blk[3], out=m), replace=True)
                kept.append(a)
        g, gb = torch.empty(n, H, dtype=dtype), torch.empty(n, H, dtype=mm_dtype)
        kernels.bf16_head(h, s_out, out_shift, w_signed, bias_out, w_row, logits, g, gb)
        for i, blk in enumerate(reversed(blocks)):
            gb_next = gb if i < len(blocks) - 1 else None  # the last one's gradient goes to fc_p in fp32
            if blk[0] == "res":
                _, _, _, _, _, _, A1T, B0T = blk
                y, a = kept.pop(), kept.pop()
                gy = torch.mm(gb, A1T, out=m)
                kernels.bf16_mask(gy, y)
                kernels.bf16_mask_into(g, torch.mm(gy, B0T, out=m2), a, gb_next, accumulate=True)
            else:
                kernels.bf16_mask_into(g, torch.mm(gb, blk[4], out=m), kept.pop(), gb_next, accumulate=False)
        torch.mm(g, WpT.t(), out=grad)

    return run_compiled


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

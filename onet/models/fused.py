"""Fast path of the occupancy decoders on CPU: the trunk as one chunked, recomputing autograd Function.

Run as plain modules, a CBN-ResNet decoder makes a dozen whole-tensor passes
per linear layer (batch norm, affine, ReLU, linear forward; as many again
backward) over (B*T, H) activations far larger than the CPU caches, so most
of a training step waits on memory (about 20% of the matmul peak measured).
Here every "unit" -- normalise, per-object affine, ReLU, linear (+ skip) --
runs over cache-sized chunks of points: the elementwise work happens on data
that is still in cache right before or after the chunk's matmul, and the
statistics of a unit's output for the next normalisation are accumulated on
the way (one pass, shifted sums). Only each normalisation's input is stored;
the ReLU output is recomputed in the backward pass.

Backward of one unit y = relu(x_hat * g_b + b_b) @ W^T + c, x_hat = (x - mean) * rstd:
one chunked pass evaluates dy (the unit above's input gradient, see below),
recomputes a = relu(...), accumulates dW, dc, the per-object sums S1_b = sum
dz, S2_b = sum dz * x (dz = da * [a > 0], da = dy @ W) and stores dz. The
unit's own input gradient dx = rstd * (g_b dz - mean(g dz) - x_hat mean(g dz
x_hat)), both means from S1, S2 (train mode; in eval mode the statistics are
constants and dx = rstd * g_b * dz), is an affine map of dz and x per channel;
it is not written out but evaluated chunk by chunk by the unit below
(`_InputGrad`). dgamma_b = rstd (S2_b - mean S1_b), dbeta_b = S1_b.

Where a C compiler exists (onet/utils/native.py), the elementwise passes run
as single loops from fused_kernels.c instead of torch ops: in fp32 the same
results to float rounding, the decoder's forward + backward about 0.8x the
time; in bf16 the same products and roundings, each pass reading and writing
the bf16 operands itself (no dtype copies: the demo's bf16 step 0.15-0.19 s
against 0.19-0.30 on torch ops, README, Performance). The folded eval-mode
network in bf16 (decoders.py: MISE, refinement, normals) takes its elementwise
steps from the same library.

Semantics are those of the plain modules (DESIGN §5), checked value by value
and gradient by gradient in tests/models/test_fused.py: batch statistics over
batch and points with biased variance for normalising, running statistics
updated with the unbiased variance and the module's momentum, eval mode with
running statistics.

Precision: `mm_dtype=torch.bfloat16` feeds the matmuls bf16 inputs (fp32
accumulation inside the kernel); statistics, the residual stream and all
reductions stay fp32, and the ReLU -> linear intermediate is stored in bf16.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from onet.utils import native as native_lib
from onet.utils.device import last_level_cache_bytes

# Rows of one chunk per torch CPU thread for H = 256 (scaled by 256 / H): a
# chunk's handful of (rows, H) buffers then stay in the caches while each
# thread's matmul block is still big enough to run near peak (the torch ops).
CHUNK_ROWS_PER_THREAD_H256 = 1024
# With the compiled passes, which stream their chunk from memory in one go,
# larger chunks win: fewer calls, thread hand-offs and matmul edges per unit.
# Pointcloud decoder, B = 64, 2 threads, fp32, 2026-12-06, forward + backward,
# alternating, three rounds: 2048 / 3072 / 4096 / 6144 / 8192 / 12288 / 16384
# rows per thread 2.03-2.09 / 1.99-2.00 / 1.97-2.01 / 1.94-1.95 / 1.92-1.93 /
# 1.95-2.03 / 1.99-2.10 s (bf16, torch ops: 1024 per thread 1.92-2.05 s,
# 4096 2.08-2.23 s). The chunk's four scratch buffers are kept within half the
# last-level cache, where it is known (this CPU's: 480 MB).
CHUNK_ROWS_PER_THREAD_H256_NATIVE = 8192

_threshold_backward = torch.ops.aten.threshold_backward

KERNELS_SOURCE = Path(__file__).with_name("fused_kernels.c")


def _ptr(x: torch.Tensor | None) -> int | None:
    return None if x is None else x.data_ptr()


def _is_bf16(x: torch.Tensor | None) -> int:
    return int(x is not None and x.dtype == torch.bfloat16)


class _Native:
    """The elementwise passes of an fp32 unit as single C loops (fused_kernels.c), on torch's threads.

    Each replaces two to five torch ops (first measured per 2048 x 256 chunk, operands in
    cache, 2-core AVX-512 CPU: activation 41 us against 63 for addcmul + relu_; bias +
    statistics 43 against 141; ReLU backward with the per-object sums 166 against 293).
    Tensors must be contiguous float32; per-object arguments point at the chunk's first object.
    """

    def __init__(self, lib: ctypes.CDLL):
        vp, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
        lib.onet_act.argtypes = [vp, i32, vp, vp, vp, i32] + [i64] * 3 + [i32]
        lib.onet_bias_stats.argtypes = [vp, i32] + [vp] * 4 + [i64] * 2 + [vp] * 3 + [i32]
        lib.onet_relu_back.argtypes = [vp, vp, i32, vp, i32, vp] + [i64] * 3 + [vp] * 3 + [i32]
        lib.onet_input_grad.argtypes = [vp, vp, i32] + [vp] * 7 + [i64] * 3 + [vp] * 2 + [i32]
        # the bf16 folded eval network (decoders._relu_form)
        lib.onet_bf16_into.argtypes = [vp] * 2 + [i64] * 2 + [i32] * 2
        lib.onet_bf16_mask.argtypes = [vp] * 2 + [i64] * 2 + [i32]
        lib.onet_bf16_mask_into.argtypes = [vp] * 4 + [i64] * 2 + [i32] * 2
        lib.onet_bf16_head.argtypes = [vp] * 4 + [ctypes.c_float] + [vp] * 4 + [i64] * 2 + [i32]
        lib.onet_bf16_clamp.argtypes = [vp, i32] + [vp] * 4 + [i64] * 2 + [i32]
        for f in (lib.onet_act, lib.onet_bias_stats, lib.onet_relu_back, lib.onet_input_grad, lib.onet_bf16_into,
                  lib.onet_bf16_mask, lib.onet_bf16_mask_into, lib.onet_bf16_head, lib.onet_bf16_clamp):
            f.restype = None
        self.lib = lib
        self.part = torch.empty(0)

    def scratch(self, H: int) -> int:
        """Room for every thread's partial sums in double, three objects' worth (see fused_kernels.c)."""
        nt = max(1, torch.get_num_threads())
        if self.part.numel() < nt * 6 * H:
            self.part = torch.empty(nt * 6 * H, dtype=torch.float64)
        return nt

    def act(self, x, s, t, a, tt: int) -> None:
        """a = relu(x * s_b + t_b) (relu(x) when s is None); x, a: (n, H), float32 or bf16."""
        n, H = x.shape
        self.lib.onet_act(x.data_ptr(), _is_bf16(x), _ptr(s), _ptr(t), a.data_ptr(), _is_bf16(a), n, tt, H,
                          torch.get_num_threads())

    def bias_stats(self, m, bias, skip, out, K=None, s1=None, s2=None) -> None:
        """out = m (+ bias) (+ skip) (not written when None); when K is given, s1, s2 (H,) = sums over
        the rows of (out - K) and (out - K)^2. m (float32 or bf16), skip, out: (n, H)."""
        n, H = m.shape
        nt = self.scratch(H)
        self.lib.onet_bias_stats(m.data_ptr(), _is_bf16(m), _ptr(bias), _ptr(skip), _ptr(out), _ptr(K), n, H,
                                 _ptr(s1), _ptr(s2), self.part.data_ptr(), nt)

    def relu_back(self, da, a, x, dz, tt: int, S1, S2) -> None:
        """dz = da * [a > 0]; per object b of the chunk S1[b] = sum dz, S2[b] = sum dz * x (x not None).
        da and a both float32 or both bf16; x float32 or bf16."""
        n, H = da.shape
        nt = self.scratch(H)
        self.lib.onet_relu_back(da.data_ptr(), a.data_ptr(), _is_bf16(da), _ptr(x), _is_bf16(x), dz.data_ptr(), n,
                                tt, H, _ptr(S1), _ptr(S2), self.part.data_ptr(), nt)

    def input_grad(self, dz, x, s, v, c0, add, out, keep, tt: int, db, low=None) -> None:
        """out = dz * s_b (+ x * v + c0) (+ add) (dz (+ add) when s is None); keep = out, low = bf16(out)
        and db (H,) = its row sums when given. dz, add, out, keep: (n, H) float32; x float32 or bf16."""
        n, H = dz.shape
        nt = self.scratch(H)
        self.lib.onet_input_grad(dz.data_ptr(), _ptr(x), _is_bf16(x), _ptr(s), _ptr(v), _ptr(c0), _ptr(add),
                                 out.data_ptr(), _ptr(keep), _ptr(low), n, tt, H, _ptr(db), self.part.data_ptr(), nt)

    # The bf16 folded eval network, one object's chunk (n, H): float32 h, g; bf16 a, y, m, gb;
    # per-channel vectors (H,) float32. One pass each (fused_kernels.c); its ReLUs are `act`.

    def bf16_into(self, h, m, replace: bool) -> None:
        """h = m (replace) or h += m."""
        n, H = h.shape
        self.lib.onet_bf16_into(h.data_ptr(), m.data_ptr(), n, H, int(replace), torch.get_num_threads())

    def bf16_mask(self, g, y) -> None:
        """g = 0 where y <= 0, in place."""
        n, H = g.shape
        self.lib.onet_bf16_mask(g.data_ptr(), y.data_ptr(), n, H, torch.get_num_threads())

    def bf16_mask_into(self, g, m, a, gb, accumulate: bool) -> None:
        """d = m where a > 0 else 0; g += d (accumulate) or g = d; gb = bf16(g) when gb is not None."""
        n, H = g.shape
        self.lib.onet_bf16_mask_into(g.data_ptr(), m.data_ptr(), a.data_ptr(), _ptr(gb), n, H, int(accumulate),
                                     torch.get_num_threads())

    def bf16_head(self, h, s, shift, w, b: float, w_grad, logits, g, gb) -> None:
        """a = relu(h * s + shift); logits = b + a @ w; g = w_grad where a > 0 else 0; gb = bf16(g)."""
        n, H = h.shape
        self.lib.onet_bf16_head(h.data_ptr(), s.data_ptr(), shift.data_ptr(), w.data_ptr(), b, w_grad.data_ptr(),
                                logits.data_ptr(), g.data_ptr(), gb.data_ptr(), n, H, torch.get_num_threads())

    def bf16_clamp(self, x, q, lo, hi, a) -> None:
        """a = bf16(clamp(x + q, lo, hi)) (`_centered`'s clamp form; x float32 or bf16)."""
        n, H = x.shape
        self.lib.onet_bf16_clamp(x.data_ptr(), _is_bf16(x), q.data_ptr(), lo.data_ptr(), hi.data_ptr(), a.data_ptr(),
                                 n, H, torch.get_num_threads())


_native: list = []
_bind_error: list = []


def describe_kernels() -> str:
    """How the CPU trunk runs its elementwise passes, for the training log."""
    if native() is not None:
        return f"compiled C loops ({KERNELS_SOURCE.name})"
    if not native_lib.enabled():
        return "torch ops: turned off (ONET_NATIVE=0)"
    return f"torch ops: {_bind_error[0] if _bind_error else native_lib.load(KERNELS_SOURCE)[1]}"


def native() -> _Native | None:
    """The compiled kernels, or None (no compiler, not Linux, ONET_NATIVE=0: see onet/utils/native.py)."""
    if not native_lib.enabled():
        return None
    if not _native:
        lib, _ = native_lib.load(KERNELS_SOURCE)
        try:
            _native.append(None if lib is None else _Native(lib))
        except AttributeError as exc:  # a library that lacks a kernel bound here: the torch ops, not a crash
            _bind_error.append(f"{KERNELS_SOURCE.name} built without a kernel this module uses ({exc})")
            _native.append(None)
    return _native[0]


@dataclass
class Unit:
    """One normalise-affine-ReLU-linear unit of a decoder.

    gamma, beta: (B, H_in) per-object scale and shift after normalising
        (None for an unnormalised unit: a = relu(x)).
    bn: the nn.BatchNorm1d holding running statistics (None when unnormalised).
    weight: (H_out, H_in); bias: (H_out,).
    """

    gamma: torch.Tensor | None
    beta: torch.Tensor | None
    bn: nn.BatchNorm1d | None
    weight: torch.Tensor
    bias: torch.Tensor

    @property
    def normalized(self) -> bool:
        return self.bn is not None


def autocast_mm_dtype(device_type: str) -> torch.dtype | None | bool:
    """Matmul dtype of the fused trunk under the current autocast state.

    None (the parameters' dtype) without autocast, bfloat16 under bf16 autocast;
    False (use the plain modules) under any other autocast dtype.
    """
    if not torch.is_autocast_enabled(device_type):
        return None
    dtype = torch.get_autocast_dtype(device_type)
    return dtype if dtype == torch.bfloat16 else False


def supported(decoder: nn.Module, p: torch.Tensor) -> bool:
    """Whether the fused trunk reproduces `decoder`'s plain modules on points p (B, T, dim).

    CPU only (on CUDA the plain modules are memory-bound far less and kernel
    launches matter more), float32 parameters, plain BatchNorm1d modules
    (SyncBatchNorm needs its collective) with a fixed momentum, and more than one
    value per channel in training (the plain modules raise there).
    """
    if p.device.type != "cpu" or decoder.fc_p.weight.dtype not in (torch.float32, torch.float64) or p.shape[1] == 0:
        return False
    for m in decoder.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if type(m) is not nn.BatchNorm1d or m.momentum is None or not m.track_running_stats:
                return False
            if m.running_mean is None or (m.training and p.shape[0] * p.shape[1] < 2):
                return False
    return True


def chunk_plan(B: int, T: int, rows: int) -> list[tuple[int, int, int, int]]:
    """Chunks (b0, b1, t0, t1) of a (B, T, H) tensor: whole objects, or parts of one.

    Each chunk x[b0:b1, t0:t1] is contiguous (b1 - b0 == 1 or the whole T), so
    it reshapes to (rows, H) without a copy, and belongs to one object or to
    whole objects, so per-object affine maps broadcast over it.
    """
    rows = max(1, rows)
    if T >= rows:
        n = math.ceil(T / rows)
        step = math.ceil(T / n)  # even parts, no tiny ragged one
        return [(b, b + 1, t0, min(T, t0 + step)) for b in range(B) for t0 in range(0, T, step)]
    per = max(1, rows // T)
    return [(b0, min(B, b0 + per), 0, T) for b0 in range(0, B, per)]


def default_chunk_rows(hidden: int, compiled: bool = False) -> int:
    per_thread = CHUNK_ROWS_PER_THREAD_H256_NATIVE if compiled else CHUNK_ROWS_PER_THREAD_H256
    rows = max(64, per_thread * 256 // max(1, hidden)) * max(1, torch.get_num_threads())
    llc = last_level_cache_bytes() if compiled else None
    if llc:
        rows = min(rows, max(64 * max(1, torch.get_num_threads()), llc // 2 // (4 * 4 * max(1, hidden))))
    return rows


def _kernels_for(dtype: torch.dtype, mm_dtype: torch.dtype) -> _Native | None:
    """The compiled passes where they apply: float32 activations, matmul inputs float32 or bf16
    (float64, in tests, runs the torch ops)."""
    return native() if dtype == torch.float32 and mm_dtype in (torch.float32, torch.bfloat16) else None


def _row_sums(x: torch.Tensor, ones: torch.Tensor, out: torch.Tensor) -> None:
    """out (nb, H) = the sums over the rows of each object's block of x (nb, t, H).

    As a product with a row of ones, not torch.sum: with two threads, a sum over rows
    right after an elementwise pass on the same chunk took 2.5x the time of the product
    (2048 x 256 floats: 96 us against 13; the reduction divides the chunk between the
    threads unlike the pass before it, so each reads the other core's cache), and the
    fused trunk makes five such sums per unit and chunk. ones: (>= t,) of x's dtype.
    """
    nb, t, H = x.shape
    if nb == 1:
        torch.mm(ones[:t].view(1, t), x[0], out=out.view(1, H))
    else:
        torch.bmm(ones[:t].view(1, 1, t).expand(nb, 1, t), x, out=out.view(nb, 1, H))


class _Stats:
    """Per-channel batch mean and variance accumulated chunk by chunk in one pass.

    Sums of (x - K) and (x - K)^2 with K = the first row seen: K is a sample of
    the distribution, so the variance suffers no cancellation even when the
    mean is far from 0. Chunk sums go into rows of a buffer (no tiny ops per
    chunk) and are added up in fp64 at the end.
    """

    def __init__(self, H: int, n_chunks: int, scratch: torch.Tensor, ones: torch.Tensor, kernels: _Native | None):
        self.kernels = kernels
        self.dtype = scratch.dtype
        self.ones = ones
        self.K = None
        self.sums = torch.empty(2, n_chunks, H, dtype=scratch.dtype)
        self.i = 0
        self.n = 0
        self.scratch = scratch  # flat buffer of at least rows * H

    def add(self, y: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        """y: (n, H) chunk (any float dtype), first `y += bias` when given; chunks come in order, each once."""
        n, H = y.shape
        if self.kernels is not None:
            self.add_output(y, bias, None, y if bias is not None else None)
            return
        if bias is not None:
            y.add_(bias)
        if self.K is None:
            self.K = y[0].to(self.dtype, copy=True)
        d = self.scratch[: n * H].view(n, H)
        torch.sub(y, self.K, out=d)
        _row_sums(d.view(1, n, H), self.ones, self.sums[0, self.i])
        d.mul_(d)
        _row_sums(d.view(1, n, H), self.ones, self.sums[1, self.i])
        self.i += 1
        self.n += n

    def add_output(self, m: torch.Tensor, bias, skip, out) -> None:
        """Compiled kernels: out = m + bias + skip (see _Native.bias_stats), its statistics added."""
        if self.K is None:
            first = m[0] if bias is None else m[0] + bias
            self.K = (first if skip is None else first + skip[0]).to(self.dtype, copy=True)
        self.kernels.bias_stats(m, bias, skip, out, self.K, self.sums[0, self.i], self.sums[1, self.i])
        self.i += 1
        self.n += m.shape[0]

    def mean_var(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and biased variance (H,) in the activations' dtype."""
        s1, s2 = self.sums[:, : self.i].double().sum(1)
        m = s1 / self.n
        var = (s2 / self.n - m * m).clamp_min_(0)
        return (self.K.double() + m).to(self.dtype), var.to(self.dtype)


def _update_running(bn: nn.BatchNorm1d, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
    """BatchNorm1d's train-mode update: momentum average of the mean and the unbiased variance."""
    with torch.no_grad():
        bn.num_batches_tracked.add_(1)
        m = bn.momentum
        bn.running_mean.mul_(1 - m).add_(mean, alpha=m)
        bn.running_var.mul_(1 - m).add_(var * (n / (n - 1)), alpha=m)


class _Plan:
    """Shapes, chunks and reusable scratch buffers of one trunk call."""

    def __init__(self, B: int, T: int, H: int, chunk_rows: int, dtype: torch.dtype, mm_dtype: torch.dtype):
        self.B, self.T, self.H = B, T, H
        self.dtype = dtype  # of activations, statistics and gradients (float32, or float64 in tests)
        self.chunks = chunk_plan(B, T, chunk_rows)
        self.rows = max((b1 - b0) * (t1 - t0) for b0, b1, t0, t1 in self.chunks)
        # per-object partial sums of the backward pass: one row per (chunk, object in it)
        self.part_start = [0]
        for b0, b1, _, _ in self.chunks:
            self.part_start.append(self.part_start[-1] + b1 - b0)
        self.part_object = torch.cat([torch.arange(b0, b1) for b0, b1, _, _ in self.chunks])
        self.mm_dtype = mm_dtype
        n = self.rows * H
        self.a = torch.empty(n, dtype=mm_dtype)  # ReLU output, the matmul's input
        self.f = torch.empty(n, dtype=dtype)  # scratch: statistics, products
        self.m = torch.empty(n, dtype=mm_dtype)  # matmul output / gradient in mm dtype
        self.d = torch.empty(n, dtype=dtype)  # a unit's output gradient, evaluated chunk by chunk
        self.ones = torch.ones(self.rows, dtype=dtype)  # row sums as products (_row_sums)
        self.native = _kernels_for(dtype, mm_dtype)

    def view(self, buf: torch.Tensor, n: int, cols: int) -> torch.Tensor:
        return buf[: n * cols].view(n, cols)

    def stats(self, H: int) -> _Stats:
        return _Stats(H, len(self.chunks), self.f, self.ones, self.native)

    def per_object(self, parts: torch.Tensor) -> torch.Tensor:
        """(parts, H) partial sums -> (B, H) sums per object."""
        return parts.new_zeros(self.B, parts.shape[1]).index_add_(0, self.part_object, parts)


def _affine(gamma, beta, mean, rstd):
    """Per-object scale s and shift t (B, H_in) with relu(x_hat * gamma + beta) = relu(x * s + t)."""
    if gamma is None:
        return None, None
    s = gamma * rstd
    return s, beta - mean * s


def _act(plan: _Plan, xc: torch.Tensor, s, t, b0: int, b1: int) -> torch.Tensor:
    """relu(x * s_b + t_b) of a chunk xc (nb, t, H_in) into the scratch; returns (n, H_in)."""
    nb, tt, H = xc.shape
    a = plan.view(plan.a, nb * tt, H).view(nb, tt, H)
    if plan.native is not None:
        plan.native.act(xc.view(nb * tt, H), None if s is None else s[b0:b1], None if t is None else t[b0:b1],
                        a.view(nb * tt, H), tt)
        return a.view(nb * tt, H)
    if s is None:
        a.copy_(xc)
    else:
        torch.addcmul(t[b0:b1].unsqueeze(1), xc, s[b0:b1].unsqueeze(1), out=a)
    a.relu_()
    return a.view(nb * tt, H)


def _unit_forward(plan: _Plan, x: torch.Tensor, s, t, out: torch.Tensor, skip: torch.Tensor | None,
                  stats: _Stats | None, wT: torch.Tensor, bias: torch.Tensor) -> None:
    """out[...] = skip + relu(x * s + t) @ wT + bias, chunk by chunk; accumulate stats of out.

    x: (B, T, H_in); out, skip: (B, T, H_out); wT (H_in, H_out), bias in mm dtype.
    """
    H_out = out.shape[2]
    low = plan.mm_dtype != plan.dtype
    for b0, b1, t0, t1 in plan.chunks:
        a = _act(plan, x[b0:b1, t0:t1], s, t, b0, b1)
        n = a.shape[0]
        oc = out[b0:b1, t0:t1].reshape(n, H_out)
        if plan.native is not None and (stats is not None or skip is not None):
            # the product into the cache; bias, skip and statistics in one pass that writes oc
            sk = None if skip is None else skip[b0:b1, t0:t1].reshape(n, H_out)
            if not low:
                m, bias_k, out_k = torch.mm(a, wT, out=plan.view(plan.m, n, H_out)), bias, oc
            elif skip is None and oc.dtype == plan.mm_dtype:  # a block's bf16 intermediate: its statistics
                m, bias_k, out_k = torch.addmm(bias, a, wT, out=oc), None, None
            else:  # bf16 product (bias inside, one rounding, as the torch ops) into the fp32 stream
                m, bias_k, out_k = torch.addmm(bias, a, wT, out=plan.view(plan.m, n, H_out)), None, oc
            if stats is not None:
                stats.add_output(m, bias_k, sk, out_k)
            else:
                plan.native.bias_stats(m, bias_k, sk, out_k)
            continue
        bias_left = None  # added in the statistics pass when there is one
        if skip is None and oc.dtype != a.dtype:  # a bf16 product into the fp32 stream ("lin" blocks)
            oc.copy_(torch.addmm(bias, a, wT, out=plan.view(plan.m, n, H_out)))
        elif skip is None:
            torch.addmm(bias, a, wT, out=oc)
        elif not low:
            torch.addmm(skip[b0:b1, t0:t1].reshape(n, H_out), a, wT, out=oc)
            bias_left = bias
        else:  # fp32 residual stream: the bf16 product is added in fp32
            y = plan.view(plan.m, n, H_out)
            torch.addmm(bias, a, wT, out=y)
            torch.add(skip[b0:b1, t0:t1].reshape(n, H_out), y, out=oc)
        if stats is not None:
            stats.add(oc, bias_left)
        elif bias_left is not None:
            oc.add_(bias_left)


@dataclass
class _InputGrad:
    """A unit's input gradient dx = dz * s_b (+ x * v + c0) (+ add), not written out.

    Its one reader, the next unit down, evaluates it chunk by chunk into the cache
    (`_input_grad_chunk`), which saves writing dx and reading it back (two passes over
    B x T x H per unit). `value` instead: a gradient already in memory. s None: an
    unnormalised unit, dx = dz (+ add); v, c0 None: eval mode (constant statistics).
    """

    value: torch.Tensor | None = None
    dz: torch.Tensor | None = None
    x: torch.Tensor | None = None
    s: torch.Tensor | None = None
    v: torch.Tensor | None = None
    c0: torch.Tensor | None = None
    add: torch.Tensor | None = None


def _input_grad_chunk(plan: _Plan, g: _InputGrad, b0: int, b1: int, t0: int, t1: int, out: torch.Tensor,
                      keep: torch.Tensor | None, db: torch.Tensor | None, low: torch.Tensor | None = None
                      ) -> torch.Tensor:
    """Chunk [b0:b1, t0:t1] of g as (n, H): a view of g.value, or evaluated into `out` (n, H; may be
    that chunk of g.dz). Also written into `keep` (n, H) and summed over rows into `db` (H,), when given;
    the compiled pass also writes a bf16 copy into `low` when given (the torch ops leave that to the caller)."""
    n = (b1 - b0) * (t1 - t0)
    H = g.value.shape[2] if g.value is not None else g.dz.shape[2]
    if g.value is not None:
        res = g.value[b0:b1, t0:t1].reshape(n, H)
        if keep is not None:
            keep.copy_(res)
    else:
        dzc = g.dz[b0:b1, t0:t1].reshape(n, H)
        xc = None if g.x is None else g.x[b0:b1, t0:t1].reshape(n, H)
        addc = None if g.add is None else g.add[b0:b1, t0:t1].reshape(n, H)
        sb = None if g.s is None else g.s[b0:b1]
        if plan.native is not None:
            plan.native.input_grad(dzc, xc, sb, g.v, g.c0, addc, out, keep, t1 - t0, db, low)
            return out
        if sb is None:
            if out.data_ptr() != dzc.data_ptr():
                out.copy_(dzc)
        else:  # in this order, `out` may be dz's chunk
            torch.mul(dzc.view(b1 - b0, t1 - t0, H), sb.unsqueeze(1), out=out.view(b1 - b0, t1 - t0, H))
            if g.v is not None:
                out.addcmul_(xc, g.v).add_(g.c0)
        if addc is not None:
            out.add_(addc)
        if keep is not None:
            keep.copy_(out)
        res = out
    if db is not None:
        _row_sums(res.view(1, n, H), plan.ones, db)
    return res


def _unit_backward(plan: _Plan, x: torch.Tensor, gamma, s, t, mean, rstd, dy: _InputGrad, dz: torch.Tensor,
                   w: torch.Tensor, batch_stats: bool, keep: torch.Tensor | None, add: torch.Tensor | None):
    """Gradients of one unit. x: (B, T, H_in) its input; dy: its output's gradient (B, T, H_out).

    One pass over the chunks: dy evaluated (and written into `keep` when given: the residual
    stream's gradient, needed again as the skip gradient), the activation recomputed, the
    weight gradients, dz = the gradient at the ReLU input and its per-object sums, written
    into `dz` (B, T, H_in; may hold dy's own dz: each chunk of dy is evaluated before that
    chunk of dz is written). w: (H_out, H_in) in mm dtype; gamma, s, t: (B, H_in) or None
    (unnormalised). Returns (dgamma, dbeta, dweight, dbias) and the input gradient, with
    `add` (the skip gradient) in it, unevaluated; dgamma/dbeta are None for an unnormalised unit.
    """
    B, T, H_in = x.shape
    H_out = w.shape[0]
    low = plan.mm_dtype != plan.dtype
    normalized = gamma is not None
    dwT = torch.zeros(H_in, H_out, dtype=plan.dtype)
    db_parts = torch.empty(len(plan.chunks), H_out, dtype=plan.dtype)
    n_parts = plan.part_start[-1]
    # per (chunk, object) sums of dz and dz * x
    S_parts = torch.empty(2, n_parts, H_in, dtype=plan.dtype) if normalized else None
    for i, (b0, b1, t0, t1) in enumerate(plan.chunks):
        n = (b1 - b0) * (t1 - t0)
        dyc = _input_grad_chunk(plan, dy, b0, b1, t0, t1, plan.view(plan.d, n, H_out),
                                None if keep is None else keep[b0:b1, t0:t1].reshape(n, H_out), db_parts[i],
                                low=plan.view(plan.m, n, H_out) if low else None)
        xc = x[b0:b1, t0:t1]
        a = _act(plan, xc, s, t, b0, b1)
        if low:
            dym = plan.view(plan.m, n, H_out)
            if not (plan.native is not None and dy.value is None):  # the compiled pass wrote it already
                dym.copy_(dyc)
            dwT += torch.mm(a.t(), dym)  # bf16 chunk product, fp32 total
            da = torch.mm(dym, w)
        else:
            dwT.addmm_(a.t(), dyc)
            da = torch.mm(dyc, w, out=plan.view(plan.f, n, H_in))
        dzc = dz[b0:b1, t0:t1].reshape(n, H_in)
        if plan.native is not None:
            S = (None, None) if not normalized else S_parts[:, plan.part_start[i]]
            plan.native.relu_back(da, a, xc.reshape(n, H_in) if normalized else None, dzc, t1 - t0, *S)
            continue
        if low:
            dzc.copy_(_threshold_backward(da, a, 0))
        else:
            _threshold_backward.grad_input(da, a, 0, grad_input=dzc)
        if normalized:
            nb = b1 - b0
            rows = slice(plan.part_start[i], plan.part_start[i + 1])
            dz3 = dzc.view(nb, -1, H_in)
            _row_sums(dz3, plan.ones, S_parts[0, rows])
            prod = plan.view(plan.f, n, H_in).view(nb, -1, H_in)
            torch.mul(dz3, xc, out=prod)
            _row_sums(prod, plan.ones, S_parts[1, rows])
    db = db_parts.sum(0)
    if not normalized:  # a = relu(x): dx = dz
        return (None, None, dwT.t(), db), _InputGrad(dz=dz, add=add)
    S1, S2 = plan.per_object(S_parts[0]), plan.per_object(S_parts[1])
    dgamma = rstd * (S2 - mean * S1)
    dbeta = S1
    # dx = s_b dz (+ the batch-statistics terms v * x + c0) (+ the skip gradient)
    v = c0 = None
    if batch_stats:
        N = B * T
        m1 = (gamma * S1).sum(0) / N  # mean of dx_hat over all points
        m2 = (gamma * dgamma).sum(0) / N  # mean of dx_hat * x_hat
        v = -rstd * rstd * m2
        c0 = -rstd * m1 - v * mean
    return (dgamma, dbeta, dwT.t(), db), _InputGrad(dz=dz, x=x, s=s, v=v, c0=c0, add=add)


class _Trunk(torch.autograd.Function):
    """logits (B, T) of the decoder trunk from its first point features h0 (B, T, H).

    Blocks are "res" (unit 0, unit 1, skip) or "lin" (one unit, no skip); the
    last unit is the output layer (H_out = 1). Parameters come as a flat tuple,
    four per unit: gamma, beta, weight, bias (gamma/beta None when unnormalised).
    """

    @staticmethod
    @torch.autocast("cpu", enabled=False)
    def forward(ctx, meta, h0, *params):
        bns, layout, mm_dtype, chunk_rows = meta
        B, T, H = h0.shape
        n_units = len(bns)
        gammas, betas = params[0::4], params[1::4]
        wTs = [w.detach().t().to(mm_dtype) for w in params[2::4]]
        biases = [b.detach().to(mm_dtype) for b in params[3::4]]
        plan = _Plan(B, T, H, chunk_rows, h0.dtype, mm_dtype)
        low = mm_dtype != h0.dtype

        def batch_stats(k: int) -> bool:
            return k < n_units and bns[k] is not None and bns[k].training

        def new_stats(k: int) -> _Stats | None:
            return plan.stats(H) if batch_stats(k) else None

        norms = []  # per unit: (mean, rstd, s, t, batch statistics?)

        def normalisation(k: int, stats: _Stats | None) -> tuple:
            bn = bns[k]
            if bn is None:
                mean = rstd = None
            elif stats is not None:
                mean, var = stats.mean_var()
                _update_running(bn, mean, var, stats.n)
                rstd = torch.rsqrt(var + bn.eps)
            else:
                mean, rstd = bn.running_mean.detach().clone(), torch.rsqrt(bn.running_var + bn.eps)
            g = None if gammas[k] is None else gammas[k].detach()
            b = None if betas[k] is None else betas[k].detach()
            s, t = _affine(g, b, mean, rstd)
            norms.append((mean, rstd, s, t, stats is not None))
            return s, t

        stats = new_stats(0)  # statistics of the trunk's input, for the first unit
        if stats is not None:
            for b0, b1, t0, t1 in plan.chunks:
                stats.add(h0[b0:b1, t0:t1].reshape(-1, H))
        h = h0.detach()
        saved_x = []  # the input of every unit
        k = 0
        for kind in layout:
            s, t = normalisation(k, stats)
            if kind == "res":
                y0 = torch.empty(B, T, H, dtype=mm_dtype)  # bf16 mode: stored in bf16
                stats = new_stats(k + 1)
                _unit_forward(plan, h, s, t, y0, None, stats, wTs[k], biases[k])
                s, t = normalisation(k + 1, stats)
                h_new = torch.empty(B, T, H, dtype=h0.dtype)
                stats = new_stats(k + 2)
                _unit_forward(plan, y0, s, t, h_new, h, stats, wTs[k + 1], biases[k + 1])
                saved_x += [h, y0]
                k += 2
            else:
                h_new = torch.empty(B, T, H, dtype=h0.dtype)
                stats = new_stats(k + 1)
                _unit_forward(plan, h, s, t, h_new, None, stats, wTs[k], biases[k])
                saved_x.append(h)
                k += 1
            h = h_new
        s, t = normalisation(k, stats)  # the output layer, H -> 1
        y = torch.empty(B, T, 1, dtype=mm_dtype)
        _unit_forward(plan, h, s, t, y, None, None, wTs[k], biases[k])
        saved_x.append(h)

        ctx.meta, ctx.plan, ctx.saved_x, ctx.norms = meta, plan, saved_x, norms
        ctx.gammas = [None if g is None else g.detach() for g in gammas]
        ctx.ws = [w.detach().to(mm_dtype) for w in params[2::4]]  # (H_out, H_in)
        return y.view(B, T).to(h0.dtype) if low else y.view(B, T)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dlogits):
        bns, layout, _, _ = ctx.meta
        plan, saved_x, norms = ctx.plan, ctx.saved_x, ctx.norms
        B, T, H = plan.B, plan.T, plan.H
        grads: list = [None] * (4 * len(bns))

        def unit_grads(k: int, dy: _InputGrad, keep: torch.Tensor | None = None,
                       add: torch.Tensor | None = None) -> _InputGrad:
            mean, rstd, s, t, batch = norms[k]
            grads[4 * k: 4 * k + 4], dx = _unit_backward(plan, saved_x[k], ctx.gammas[k], s, t, mean, rstd, dy, G,
                                                         ctx.ws[k], batch, keep, add)
            return dx

        k = len(bns) - 1
        # G: every unit's dz in turn; R: the residual stream's gradient, written once per block
        G = torch.empty(B, T, H, dtype=plan.dtype)
        R = torch.empty_like(G)
        g = unit_grads(k, _InputGrad(value=dlogits.contiguous().view(B, T, 1).to(plan.dtype)))
        for kind in reversed(layout):
            if kind == "res":
                k -= 2
                g = unit_grads(k + 1, g, keep=R)  # R: the block output's gradient, the skip's
                g = unit_grads(k, g, add=R)
            else:
                k -= 1
                g = unit_grads(k, g)
        dh = G  # the trunk input's gradient, evaluated in place of the first unit's dz
        for b0, b1, t0, t1 in plan.chunks:
            n = (b1 - b0) * (t1 - t0)
            _input_grad_chunk(plan, g, b0, b1, t0, t1, dh[b0:b1, t0:t1].reshape(n, H), None, None)
        return (None, dh, *grads)


class _PointLinear(torch.autograd.Function):
    """F.linear(p, weight, bias) for points p (..., dim) with few coordinates.

    The plain linear's weight gradient comes out as (dy^T @ p)^T to match the
    transposed weight's strides: an (H, N) @ (N, 3) product that ran at 3 GFLOP/s
    (3.6 ms of a 0.29 s demo step, N = 16384, H = 128); p^T @ dy, (3, N) @ (N, H),
    took 1.0 ms.
    """

    @staticmethod
    def forward(ctx, p: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(p, weight)
        ctx.has_bias = bias is not None
        return torch.nn.functional.linear(p, weight, bias)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        p, weight = ctx.saved_tensors
        dy2 = dy.reshape(-1, dy.shape[-1])
        dp = dw = db = None
        if ctx.needs_input_grad[0]:
            dp = (dy2 @ weight).view(p.shape)
        if ctx.needs_input_grad[1]:
            dw = (p.reshape(-1, p.shape[-1]).t() @ dy2).t()
        if ctx.has_bias and ctx.needs_input_grad[2]:
            db = dy2.sum(0)
        return dp, dw, db


def point_linear(p: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """linear(p) with a fast weight gradient for few input features (`_PointLinear`)."""
    return _PointLinear.apply(p, linear.weight, linear.bias)


def trunk(units: list[Unit], layout: list[str], h0: torch.Tensor, *, mm_dtype: torch.dtype | None = None,
          chunk_rows: int | None = None) -> torch.Tensor:
    """Decoder trunk on first point features h0 (B, T, H) -> logits (B, T), fused and chunked.

    units: every unit in order (two per "res" block, one per "lin" block, then
    the output unit with H_out = 1); layout: "res" / "lin" per block. A unit
    whose BatchNorm1d is training normalises with batch statistics and updates
    the running ones, like the plain modules; otherwise it uses the running ones.
    """
    mm_dtype = mm_dtype or h0.dtype
    rows = chunk_rows or default_chunk_rows(h0.shape[2], _kernels_for(h0.dtype, mm_dtype) is not None)
    params = []
    for u in units:
        params += [u.gamma, u.beta, u.weight, u.bias]
    return _Trunk.apply(([u.bn for u in units], list(layout), mm_dtype, rows), h0.contiguous(), *params)

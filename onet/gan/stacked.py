"""Many small MLPs trained as one: stacked weights and hand-derived gradients.

The 2-D benchmark trains thousands of 4-layer MLP GANs of width 8-32. Stacked
under autograd, a step was dominated by everything but arithmetic: the
double backward of R1/R2 and WGAN-GP builds a second graph of ~100 small ops,
with layout copies around the batched matmuls. Here the forward, the input
gradient the penalties need and the penalty's own gradient (the double
backward) are written out by hand as a few batched matmuls and fused
activation gradients, and each network's parameters are views into one
(R, P) buffer, so an optimiser step is a handful of ops for all runs (1.2-2.5x
faster per step than autograd on the same stacked weights, measured group by
group). tests/gan/test_stacked.py checks every gradient run by run against
autograd through the library's losses and penalties.

Notation (per run; R runs stacked along dim 0): layer k = 1..L computes
a_k = h_{k-1} W_k + b_k with W_k (in, out), h_0 = x, h_k = σ(a_k) for k < L,
output a_L. δ_k = ∂d/∂a_k on the penalised samples (d_out = 1), g = ∂d/∂x.
The functions below keep activations feature-major, (R, features, N).
"""

from __future__ import annotations

import math

import torch

SLOPE = 0.2   # LeakyReLU's negative slope


def _act_(a: torch.Tensor, act: str) -> torch.Tensor:
    """σ in place (a is a fresh pre-activation)."""
    if act == "tanh":   # tanh(a) = 2 sigmoid(2a) − 1: 4x faster than torch.tanh on the CPUs here, within 2e-7
        return a.mul_(2).sigmoid_().mul_(2).sub_(1)
    return torch.nn.functional.leaky_relu_(a, SLOPE)


def _act_grad(g: torch.Tensor, h: torch.Tensor, act: str) -> torch.Tensor:
    """g ⊙ σ'(a), from the activation's output h = σ(a) (one fused op)."""
    if act == "tanh":
        return torch.ops.aten.tanh_backward(g, h)
    return torch.ops.aten.leaky_relu_backward(g, h, SLOPE, True)   # sign(h) = sign(a)


def _t(w: torch.Tensor) -> torch.Tensor:
    return w.transpose(1, 2)


class StackedMLP:
    """R independent MLPs in -> H -> H -> H -> out ('leaky': LeakyReLU(0.2), 'tanh'), stacked weights.

    `params` = [W1, b1, ..., W4, b4] with W (R, in, out), b (R, 1, out), all views into `flat` (R, P),
    so one optimiser step over `flat` updates every layer of every run.
    """

    def __init__(self, r: int, d_in: int, width: int, d_out: int, act: str, gen: torch.Generator, device,
                 layers: int = 4, dtype=None):
        if act not in ("leaky", "tanh"):
            raise ValueError(f"unknown activation {act!r}; choose leaky or tanh")
        dims = [d_in] + [width] * (layers - 1) + [d_out]
        shapes = [s for a, b in zip(dims[:-1], dims[1:]) for s in ((a, b), (1, b))]
        self.flat = torch.empty(r, sum(a * b for a, b in shapes), device=device, dtype=dtype)
        self.layout = tuple(shapes)
        self.params = views(self.flat, self.layout)
        with torch.no_grad():   # PyTorch's nn.Linear initialisation, per run
            for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
                for j, shape in ((2 * i, (r, a, b)), (2 * i + 1, (r, 1, b))):
                    u = torch.rand(shape, generator=gen, device=device, dtype=dtype)
                    self.params[j].copy_((u * 2 - 1) * (1 / math.sqrt(a)))
        self.act = act

    def __call__(self, x: torch.Tensor, params=None) -> torch.Tensor:
        """x (R, B, d_in) -> (R, B, d_out); differentiable when params require grad."""
        p = self.params if params is None else params
        h = x.transpose(1, 2)                                   # feature-major, as `forward`
        for i in range(0, len(p), 2):
            h = torch.baddbmm(_t(p[i + 1]), _t(p[i]), h)
            if i + 2 < len(p):
                h = torch.sigmoid(2 * h) * 2 - 1 if self.act == "tanh" else torch.nn.functional.leaky_relu(h, SLOPE)
        return h.transpose(1, 2)


def views(flat: torch.Tensor, layout) -> list[torch.Tensor]:
    """The parameter tensors [W1, b1, ...] (R, a, b) inside a flat (R, P) buffer with layout ((a, b), ...)."""
    out, off = [], 0
    for a, b in layout:
        out.append(flat[:, off:off + a * b].view(flat.shape[0], a, b))
        off += a * b
    return out


# Everything below is feature-major: activations (R, features, N) with the N samples as columns.
# MKL's batched sgemm is slow when its output has few columns: (192 x 32) @ (32 x 1) per run took
# 750 us for 144 runs against 100 us for the transposed product, and at width 8 every product was
# 3x faster with the samples as columns. Weight gradients take whichever orientation has more columns.

def _mm_w(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a (R, i, N) @ b(R, o, N)ᵀ -> (R, i, o), computed with the wider of i and o as the columns."""
    return torch.bmm(a, _t(b)) if b.shape[1] >= a.shape[1] else _t(torch.bmm(b, _t(a)))


def forward(params, x: torch.Tensor, act: str):
    """Without autograd, x (R, d_in, N): ([h_0 = x, h_1, ..., h_{L-1}], output a_L (R, d_out, N))."""
    hs = [x]
    for i in range(0, len(params) - 2, 2):
        hs.append(_act_(torch.baddbmm(_t(params[i + 1]), _t(params[i]), hs[-1]), act))
    return hs, torch.baddbmm(_t(params[-1]), _t(params[-2]), hs[-1])


def backprop(params, hs, e: torch.Tensor, act: str, *, weights: bool = True, extra_w=None, extra_a=None,
             cols: slice = slice(None)):
    """Reverse pass of `forward` for the output gradient e = ∂loss/∂a_L (R, d_out, N).

    extra_w[k]: a term added to W_{k+1}'s gradient; extra_a[k]: added to ∂loss/∂a_k on the first
    extra_a[k].shape[2] samples (the penalty's second-order terms). cols: the samples of hs that e covers.
    Returns (gradients [gW1, gb1, ...] or None, ∂loss/∂x (R, d_in, N)).
    """
    L = len(params) // 2
    grads = [None] * (2 * L)
    g = e
    for k in range(L, 0, -1):
        w, h = params[2 * k - 2], hs[k - 1][:, :, cols]
        if weights:
            gw = _mm_w(h, g)
            grads[2 * k - 2] = gw if extra_w is None or extra_w[k - 1] is None else gw + extra_w[k - 1]
            grads[2 * k - 1] = _t(g.sum(2, keepdim=True))
        gh = w * g if w.shape[2] == 1 else torch.bmm(w, g)    # ∂/∂h_{k-1}; d_out = 1: an outer product
        if k == 1:
            return (grads if weights else None), gh
        g = _act_grad(gh, h, act)
        if extra_a is not None and extra_a[k - 1] is not None:
            n = extra_a[k - 1].shape[2]
            g[:, :, :n] += extra_a[k - 1]


def input_grad(params, hs, n: int, act: str):
    """δ_1..δ_{L-1} (R, H, n) and g = ∂d/∂x (R, d_in, n) on the first n samples of a forward with d_out = 1."""
    L = len(params) // 2
    W = params[0::2]
    delta = [None] * L
    delta[L - 1] = _act_grad(W[L - 1].expand(-1, -1, n), hs[L - 1][:, :, :n], act)
    for k in range(L - 1, 1, -1):
        delta[k - 1] = _act_grad(torch.bmm(W[k - 1], delta[k]), hs[k - 1][:, :, :n], act)
    return delta, torch.bmm(W[0], delta[1])


def penalty_backprop(params, hs, delta, u: torch.Tensor, act: str):
    """Gradient of a penalty P(g) through g = ∂d/∂x (the double backward), given u = ∂P/∂g (R, d_in, n).

    Returns (terms of the weight gradients [for W_1..W_L], terms of ∂P/∂a_k on the n samples (tanh only;
    LeakyReLU's σ'' is 0)); both feed `backprop`'s extra_w / extra_a.
    """
    L = len(params) // 2
    W = params[0::2]
    n = u.shape[2]
    gw, ga = [None] * L, [None] * L
    gw[0] = _mm_w(u, delta[1])
    ud = torch.bmm(_t(W[0]), u)                                # ∂P/∂δ_1
    for k in range(1, L):
        h = hs[k][:, :, :n]
        if act == "tanh":                                      # σ''(a) = −2 h σ'(a), and δ_k = t_k σ'(a_k)
            ga[k] = ud * delta[k] * h * -2.0
        ut = _act_grad(ud, h, act)                             # ∂P/∂t_k, δ_k = t_k ⊙ σ'(a_k)
        if k < L - 1:                                          # t_k = W_{k+1} δ_{k+1}
            gw[k] = _mm_w(ut, delta[k + 1])
            ud = torch.bmm(_t(W[k]), ut)
        else:                                                  # t_{L-1} = W_L, the same for every sample
            gw[k] = ut.sum(2, keepdim=True)
    return gw, (ga if act == "tanh" else None)


def d_grads(params, act: str, kind: str, xr: torch.Tensor, fake: torch.Tensor, gamma: torch.Tensor,
            on_fake: torch.Tensor | None = None, t: torch.Tensor | None = None):
    """Gradients of the sum over runs of each run's discriminator loss + penalty.

    kind 'none': NS loss softplus(−d(x_r)) + softplus(d(x_f)), batch means; 'zc': + γ/2 E||∇d||² on
    data (R1) or, where on_fake (R, 1) is set, on fakes (R2); 'gp': WGAN loss d(x_f) − d(x_r) + γ E(||∇d(x̂)||
    − 1)² on x̂ = t x_r + (1 − t) x_f. xr, fake (R, B, 2); gamma (R,); t (R, B, 1). Returns [gW1, gb1, ...].
    """
    R, B, _ = xr.shape
    gam = gamma.view(R, 1, 1)
    ones = torch.ones(1, 1, B, device=xr.device, dtype=xr.dtype)
    if kind == "gp":
        parts = [t * xr + (1 - t) * fake, xr, fake]                 # penalised interpolates first
    elif kind == "zc":
        pen_on_fake = on_fake.view(R, 1, 1)
        parts = [torch.where(pen_on_fake, fake, xr), torch.where(pen_on_fake, xr, fake)]
    elif kind == "none":
        parts = [xr, fake]
    else:
        raise ValueError(f"unknown group kind {kind!r}")
    hs, out = forward(params, torch.cat([_t(p) for p in parts], 2), act)
    if kind == "gp":
        e = torch.cat([-ones, ones], 2).expand(R, -1, -1) / B       # on the data and fake samples
    else:                                                           # d/dd of softplus(∓d) = sigmoid(d) − [real]
        real = torch.cat([ones, 0 * ones], 2)
        if kind == "zc":
            real = torch.where(pen_on_fake, 1 - real, real)
        e = (torch.sigmoid(out) - real) / B
    if kind == "none":
        return backprop(params, hs, e, act)[0]
    delta, g = input_grad(params, hs, B, act)
    if kind == "zc":                                                # ∂/∂g of γ/2 mean ||g||²
        u = g * (gam / B)
    else:                                                           # of γ mean (||g|| − 1)², norm clamped
        sq = g.pow(2).sum(1, keepdim=True)
        norm = sq.clamp_min(1e-12).sqrt()
        u = g * torch.where(sq >= 1e-12, (2 / B) * gam * (norm - 1) / norm, 0.0)
    gw, ga = penalty_backprop(params, hs, delta, u, act)
    if kind == "gp" and ga is None:
        # the interpolates carry no loss, and with LeakyReLU no second-order term: skip their samples
        return backprop(params, hs, e, act, extra_w=gw, cols=slice(B, None))[0]
    if kind == "gp":
        e = torch.cat([0 * ones.expand(R, -1, -1), e], 2)
    return backprop(params, hs, e, act, extra_w=gw, extra_a=ga)[0]


def g_grads(g_params, d_params, act: str, z: torch.Tensor, wgan: bool):
    """Gradients of the sum over runs of the generator loss (NS: softplus(−d(G(z))); WGAN: −d(G(z))),
    batch means, for z (R, B, d_z). Returns [gW1, gb1, ...] of the generator."""
    B = z.shape[1]
    hg, fake = forward(g_params, _t(z), act)
    hd, out = forward(d_params, fake, act)
    e = torch.full_like(out, -1.0 / B) if wgan else (torch.sigmoid(out) - 1) / B
    _, gx = backprop(d_params, hd, e, act, weights=False)
    return backprop(g_params, hg, gx, act)[0]


def sample(params, z: torch.Tensor, act: str) -> torch.Tensor:
    """A generator's samples without autograd: z (R, B, d_z) -> (R, B, d_out)."""
    return _t(forward(params, _t(z), act)[1])


def flatten(grads) -> torch.Tensor:
    """[gW1, gb1, ...] -> (R, P) in the layout of StackedMLP.flat."""
    return torch.cat([g.reshape(g.shape[0], -1) for g in grads], 1)

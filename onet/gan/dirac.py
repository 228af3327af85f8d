"""The Dirac-GAN of thesis Ch. 3 (1-D) and Ch. 4 (n-D), built from the library's losses and regularisers.

p_D = δ_{x0}, p_θ = δ_θ, and the thesis's linear discriminator D_ψ(x) = ψᵀx,
which in onet's sign convention (logit high on data) is the logit
d(x) = −ψᵀx; θ, ψ ∈ R^n keep the thesis's meaning and the equilibrium is
(θ, ψ) = (x0, 0). The gradient vector field v = (−∇_θ loss_G, −∇_ψ loss_D)
of every method is computed by autograd through `onet.gan.losses` and
`onet.gan.regularizers` (double backprop for gradient penalties), so the
eigenvalues of its numerically computed Jacobian at the equilibrium test the
library against the thesis's closed forms. 1-D: x0 = 0 (Ch. 3);
--dim n >= 2: a random x0 with ||x0|| = 1 (Ch. 4; Lemmas 4.3, 4.5, 4.7).

Instance noise uses K fixed noise vectors whitened to mean 0 and covariance
exactly I, so the field is deterministic and its Jacobian at the
equilibrium (which depends on the noise's second moments only) is exact.
"""

from __future__ import annotations

import cmath
import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from onet.gan import losses as L
from onet.gan import regularizers as R
from onet.gan.plot import COLORS, Figure
from onet.utils.io import write_bytes_atomic, write_text_atomic

# name -> (generator loss, what is added), in the order of the thesis's Figs. 3.2-3.5
METHODS = {
    "gan": "standard loss, unregularised (Lemma 3.2)",
    "ns-gan": "non-saturating generator loss (Lemma 3.6)",
    "wgan": "WGAN, linear loss, no constraint (Lemma 3.8)",
    "wgan-gp": "WGAN + gradient penalty γ·E(||∇d|| − 1)² (Lemma 3.9)",
    "instance-noise": "standard loss, Gaussian instance noise σ (Lemma 3.11)",
    "r1": "standard loss + R1, γ/2·E_pD||∇d||² (Lemma 3.12)",
    "r2": "standard loss + R2, γ/2·E_pθ||∇d||² (Lemma 3.12)",
    "consensus": "consensus optimisation γ/2·||v||² (Lemma 3.10)",
    "ns-r1": "non-saturating loss + R1 (Lemmas 3.6, 3.12)",
    "nk": "Nagarajan–Kolter generator penalty η||∇_ψ V||² (derived)",
}
_LOSS = {"gan": "standard", "ns-gan": "ns", "wgan": "wgan", "wgan-gp": "wgan", "instance-noise": "standard",
         "r1": "standard", "r2": "standard", "consensus": "standard", "ns-r1": "ns", "nk": "standard"}
N_NOISE = 64


@dataclass
class DiracGAN:
    """One method on the Dirac-GAN: target x0 (n,), hyperparameters γ, σ, η. All tensors float64."""

    method: str
    x0: torch.Tensor
    gamma: float = 1.0
    sigma: float = 1.0
    eta: float = 1.0
    noise: torch.Tensor = field(default=None, repr=False)   # (K, n) whitened instance noise

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown Dirac-GAN method {self.method!r}; choose from {', '.join(METHODS)}")
        self.x0 = self.x0.to(torch.float64)
        if self.noise is None and self.method == "instance-noise":
            self.noise = whitened_noise(N_NOISE, self.x0.numel(), seed=0)

    @property
    def n(self) -> int:
        return self.x0.numel()

    @property
    def loss(self) -> str:
        return _LOSS[self.method]

    def losses(self, theta: torch.Tensor, psi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss_G, loss_D) at θ (n,), ψ (n,), each including its penalties. Scalars."""
        def disc(x):  # the thesis's D_ψ(x) = ψᵀx is the logit -ψᵀx here; x (B, n) -> (B,)
            return -(x @ psi)

        fake, real = theta[None], self.x0[None]
        if self.method == "instance-noise":
            fake = R.instance_noise(fake.expand_as(self.noise), self.sigma, noise=self.noise)
            real = R.instance_noise(real.expand_as(self.noise), self.sigma, noise=self.noise.flip(0))
        loss_g = L.g_loss(disc(fake), self.loss)
        loss_d = L.d_loss(disc(real), disc(fake), "wgan" if self.loss == "wgan" else "standard")
        if self.method in ("r1", "ns-r1"):
            loss_d = loss_d + R.r1_penalty(disc, real, self.gamma)
        elif self.method == "r2":
            loss_d = loss_d + R.r2_penalty(disc, fake, self.gamma)
        elif self.method == "wgan-gp":
            gen = torch.Generator().manual_seed(0)
            loss_d = loss_d + R.wgan_gp_penalty(disc, real, fake, self.gamma, generator=gen)
        elif self.method == "consensus":
            reg = R.consensus_penalty(loss_g, loss_d, [theta], [psi], self.gamma)
            loss_g, loss_d = loss_g + reg, loss_d + reg
        elif self.method == "nk":
            loss_g = loss_g + R.nagarajan_kolter_penalty(loss_d, [psi], self.eta)
        return loss_g, loss_d

    def field(self, w: torch.Tensor, *, create_graph: bool = False) -> torch.Tensor:
        """v(w) = (−∇_θ loss_G, −∇_ψ loss_D) at w = (θ, ψ) (2n,). Returns (2n,)."""
        n = self.n
        with torch.enable_grad():
            w = w if w.requires_grad else w.detach().requires_grad_(True)
            theta, psi = w[:n], w[n:]
            loss_g, loss_d = self.losses(theta, psi)
            (gg,) = torch.autograd.grad(loss_g, w, create_graph=True)
            (gd,) = torch.autograd.grad(loss_d, w, create_graph=create_graph)
        v = torch.cat([-gg[:n], -gd[n:]])
        return v if create_graph else v.detach()

    def equilibrium(self) -> torch.Tensor:
        return torch.cat([self.x0, torch.zeros_like(self.x0)])

    def jacobian(self, w: torch.Tensor | None = None) -> torch.Tensor:
        """The Jacobian v'(w) (2n, 2n), by autograd, at the equilibrium unless w is given."""
        w = self.equilibrium() if w is None else w.to(torch.float64)
        return torch.autograd.functional.jacobian(lambda u: self.field(u, create_graph=True), w)

    def eigenvalues(self) -> np.ndarray:
        """Eigenvalues of the Jacobian at the equilibrium, complex (2n,), sorted."""
        return sort_complex(torch.linalg.eigvals(self.jacobian()).numpy())


def whitened_noise(k: int, n: int, seed: int = 0) -> torch.Tensor:
    """K noise vectors (K, n) with sample mean exactly 0 and sample covariance exactly I (K > n)."""
    if k <= n:
        k = 2 * n + 2
    e = torch.randn(k, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    e = e - e.mean(0)
    cov = e.T @ e / k
    evals, evecs = torch.linalg.eigh(cov)
    return e @ evecs @ torch.diag(evals.rsqrt()) @ evecs.T


def sort_complex(z) -> np.ndarray:
    z = np.asarray(z, dtype=complex)
    return z[np.lexsort((np.round(z.imag, 9), np.round(z.real, 9)))]


def _quad_roots(b: float, c: float) -> list[complex]:
    """Roots of λ² + bλ + c."""
    d = cmath.sqrt(b * b / 4 - c)
    return [-b / 2 - d, -b / 2 + d]


def closed_form(method: str, x0_norm2: float, n: int, *, gamma: float, sigma: float, eta: float):
    """The thesis's eigenvalues of v' at the equilibrium, (2n,) sorted, or None where it has none.

    1-D (x0 = 0): Lemmas 3.2, 3.6, 3.8 (±iρ1), 3.11 (λ² + ρ2σ²λ + ρ1²), 3.12
    (λ² + γλ + ρ1²), 3.10 (−γρ1² ± iρ1); n-D: Lemma 4.3 / Remark 4.4 (n−1 pairs
    ±iρ1 and λ² + ρ2||x0||²λ + ρ1²), Lemma 4.5 (n−1 pairs of λ² + ρ2σ²λ + ρ1²,
    and λ² + ρ2(σ² + ||x0||²)λ + ρ1²; the printed eq. 4.20 has a typo inside the
    root), Lemma 4.7 (n−1 pairs of λ² + γλ + ρ1², and λ² + (γ + ρ2||x0||²)λ + ρ1²;
    eq. 4.42's root has a sign typo). Nagarajan–Kolter in 1-D is our derivation:
    η||∇_ψ V||² adds −2ηρ1² to the θθ entry, so λ² + 2ηρ1²λ + ρ1².
    """
    rho1, rho2 = L.RHO[_LOSS[method]]
    if method in ("gan", "ns-gan", "wgan"):
        bulk, tail = [1j * rho1, -1j * rho1], _quad_roots(rho2 * x0_norm2, rho1 ** 2)
    elif method == "instance-noise":
        s2 = sigma ** 2
        bulk, tail = _quad_roots(rho2 * s2, rho1 ** 2), _quad_roots(rho2 * (s2 + x0_norm2), rho1 ** 2)
    elif method in ("r1", "r2", "ns-r1"):
        bulk, tail = _quad_roots(gamma, rho1 ** 2), _quad_roots(gamma + rho2 * x0_norm2, rho1 ** 2)
    elif method == "consensus" and n == 1 and x0_norm2 == 0:
        bulk, tail = [], [-gamma * rho1 ** 2 + 1j * rho1, -gamma * rho1 ** 2 - 1j * rho1]
    elif method == "nk" and n == 1 and x0_norm2 == 0:
        bulk, tail = [], _quad_roots(2 * eta * rho1 ** 2, rho1 ** 2)
    else:
        return None
    return sort_complex(bulk * (n - 1) + tail)


def simulate(game: DiracGAN, w0: torch.Tensor, *, scheme: str, h_g: float, h_d: float, steps: int,
             n_g: int = 1, n_d: int = 1) -> np.ndarray:
    """Iterates of SimGD ('sim') or AltGD ('alt', n_g generator then n_d discriminator steps).

    w0: (2n,). Returns (steps + 1, 2n) float64; an iterate that overflows ends the run (rows stay NaN).
    """
    n, w = game.n, w0.to(torch.float64).clone()
    out = np.full((steps + 1, 2 * n), np.nan)
    out[0] = w.numpy()
    for k in range(steps):
        if scheme == "sim":
            v = game.field(w)
            w = torch.cat([w[:n] + h_g * v[:n], w[n:] + h_d * v[n:]])
        else:
            for _ in range(n_g):
                w = torch.cat([w[:n] + h_g * game.field(w)[:n], w[n:]])
            for _ in range(n_d):
                w = torch.cat([w[:n], w[n:] + h_d * game.field(w)[n:]])
        if not torch.isfinite(w).all() or w.abs().max() > 1e12:
            break
        out[k + 1] = w.numpy()
    return out


def update_operator_jacobian(game: DiracGAN, *, scheme: str, h_g: float, h_d: float, n_g: int = 1,
                             n_d: int = 1) -> torch.Tensor:
    """Jacobian F'(w*) (2n, 2n) of one SimGD / AltGD update at the equilibrium, by autograd."""
    n = game.n

    def step(w):
        if scheme == "sim":
            v = game.field(w, create_graph=True)
            return torch.cat([w[:n] + h_g * v[:n], w[n:] + h_d * v[n:]])
        for _ in range(n_g):
            w = torch.cat([w[:n] + h_g * game.field(w, create_graph=True)[:n], w[n:]])
        for _ in range(n_d):
            w = torch.cat([w[:n], w[n:] + h_d * game.field(w, create_graph=True)[n:]])
        return w

    return torch.autograd.functional.jacobian(step, game.equilibrium())


def altgd_closed_form(alpha: float) -> list[complex]:
    """Lemma 3.5: eigenvalues 1 − α²/2 ± sqrt((1 − α²/2)² − 1) of AltGD's update Jacobian."""
    a = 1 - alpha ** 2 / 2
    d = cmath.sqrt(a * a - 1)
    return [a - d, a + d]


# ----------------------------------------------------------------------------------------------- the tool

@dataclass
class DiracRow:
    method: str
    eigenvalues: np.ndarray
    closed: np.ndarray | None
    norm_sim: float
    norm_alt: float
    description: str


def _fmt_c(z: complex) -> str:
    re, im = z.real, z.imag
    if abs(im) < 5e-10:
        return f"{re:+.4f}"
    return f"{re:+.4f}{'+' if im >= 0 else '-'}{abs(im):.4f}i"


def format_eigs(z) -> str:
    """Distinct eigenvalues with multiplicities: '+0.0000±0.5000i ×3, -0.2500'."""
    if z is None:
        return "—"
    z = sort_complex(z)
    groups: list[list] = []
    for v in z:
        key = complex(round(v.real, 6) + 0.0, round(abs(v.imag), 6) + 0.0)  # + 0.0: no '-0.0000'
        for g in groups:
            if abs(g[0] - key) < 1e-6:
                g[1] += 1
                break
        else:
            groups.append([key, 1])
    parts = []
    for key, count in groups:
        if abs(key.imag) < 5e-7:
            s, count = f"{key.real:+.4f}", count
        else:
            s, count = f"{key.real:+.4f}±{key.imag:.4f}i", count // 2
        parts.append(s + (f" ×{count}" if count > 1 else ""))
    return ", ".join(parts)


def target(n: int, seed: int = 0) -> torch.Tensor:
    """x0: 0 in 1-D (Ch. 3); else U[0, 1]^n rescaled to ||x0|| = 1 (as Ch. 4's image scaled to [0, 1/256])."""
    if n == 1:
        return torch.zeros(1, dtype=torch.float64)
    u = torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return u / u.norm()


def start(x0: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """Initial (θ, ψ): (1, 1) in 1-D (the thesis's figures); n-D: θ ~ U[0, max x0], ψ = 0 (as §4.3)."""
    n = x0.numel()
    if n == 1:
        return torch.tensor([1.0, 1.0], dtype=torch.float64)
    u = torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return torch.cat([u * x0.max(), torch.zeros(n, dtype=torch.float64)])


def _distance(traj: np.ndarray, x0: np.ndarray) -> np.ndarray:
    """||(θ − x0, ψ)|| per iterate."""
    n = len(x0)
    return np.sqrt(((traj[:, :n] - x0) ** 2).sum(1) + (traj[:, n:] ** 2).sum(1))


def plot_field(game: DiracGAN, sim: np.ndarray, alt: np.ndarray, *, lim: float = 2.0) -> bytes:
    """1-D: the vector field on [−lim, lim]² with the SimGD and AltGD trajectories (thesis Figs. 3.2-3.5)."""
    fig = Figure(1, 1, size=(460, 440))
    p = fig.panel(0, 0, (-lim, lim), (-lim, lim), title=game.method, xlabel="theta (generator)", ylabel="psi (discriminator)")
    grid = np.linspace(-lim, lim, 17)
    vs = [(a, b, game.field(torch.tensor([a, b], dtype=torch.float64)).numpy()) for a in grid for b in grid]
    scale = 0.8 * (grid[1] - grid[0]) / max(max(np.hypot(*v) for *_, v in vs), 1e-12)
    for a, b, v in vs:
        p.arrow(a, b, v[0] * scale, v[1] * scale, COLORS["field"])
    for traj, key in ((sim, "sim"), (alt, "alt")):
        p.line(traj[:, 0], traj[:, 1], COLORS[key], width=2)
    p.points([1.0], [1.0], (230, 0, 0), r=4)
    p.legend([("SimGD", COLORS["sim"]), ("AltGD", COLORS["alt"])])
    return fig.png()


def plot_distance(method: str, sim: np.ndarray, alt: np.ndarray) -> bytes:
    """n-D: ||(θ − x0, ψ)|| over iterations for SimGD and AltGD, log scale (cf. thesis Fig. 4.3)."""
    fig = Figure(1, 1, size=(460, 400))
    vals = np.concatenate([sim[np.isfinite(sim)], alt[np.isfinite(alt)]])
    vals = vals[vals > 0]
    lo = 10 ** math.floor(math.log10(max(vals.min(), 1e-12))) if len(vals) else 1e-6
    hi = 10 ** math.ceil(math.log10(vals.max())) if len(vals) else 1.0
    p = fig.panel(0, 0, (0, len(sim) - 1), (lo, max(hi, lo * 10)), title=method, xlabel="iteration",
                  ylabel="||(theta - x0, psi)||", logy=True)
    it = np.arange(len(sim))
    p.line(it, sim, COLORS["sim"])
    p.line(it, alt, COLORS["alt"])
    p.legend([("SimGD", COLORS["sim"]), ("AltGD", COLORS["alt"])])
    return fig.png()


def run_dirac(methods, *, dim: int = 1, gamma: float = 0.3, sigma: float = 0.7, eta: float = 0.5, h: float = 0.1,
              steps: int = 500, n_d: int = 1, out_dir: str | Path | None = None,
              progress: bool = True, print_fn: Callable[[str], None] = print) -> list[DiracRow]:
    """Eigenvalues, closed forms and SimGD / AltGD distances for each method; writes tables and PNGs.

    Returns one DiracRow per method. out_dir: dirac.md, dirac.csv and <method>.png (None: write nothing).
    """
    from tqdm import tqdm

    x0 = target(dim)
    w0 = start(x0)
    rows = []
    for method in tqdm(methods, desc="dirac", disable=not progress, leave=False):
        game = DiracGAN(method, x0, gamma=gamma, sigma=sigma, eta=eta)
        eig = game.eigenvalues() if dim <= 512 else None
        closed = closed_form(method, float(x0.pow(2).sum()), dim, gamma=gamma, sigma=sigma, eta=eta)
        sim = simulate(game, w0, scheme="sim", h_g=h, h_d=h, steps=steps)
        alt = simulate(game, w0, scheme="alt", h_g=h, h_d=h, steps=steps, n_d=n_d)
        ds, da = _distance(sim, x0.numpy()), _distance(alt, x0.numpy())
        rows.append(DiracRow(method, eig, closed, float(ds[-1]), float(da[-1]), METHODS[method]))
        if out_dir is not None:
            png = plot_field(game, sim, alt) if dim == 1 else plot_distance(method, ds, da)
            write_bytes_atomic(Path(out_dir) / f"{method}.png", png)
    md = format_table(rows, dim=dim, gamma=gamma, sigma=sigma, eta=eta, h=h, steps=steps, n_d=n_d)
    print_fn(md)
    if out_dir is not None:
        write_text_atomic(Path(out_dir) / "dirac.md", md + "\n")
        write_text_atomic(Path(out_dir) / "dirac.csv", _csv(rows))
    return rows


def _norm_str(v: float) -> str:
    return "diverged" if not math.isfinite(v) else f"{v:.3g}"


def format_table(rows, *, dim, gamma, sigma, eta, h, steps, n_d) -> str:
    head = (f"Dirac-GAN, n = {dim}, γ = {gamma:g}, σ = {sigma:g}, η = {eta:g}, h_g = h_d = {h:g}, "
            f"{steps} steps from {'(θ, ψ) = (1, 1)' if dim == 1 else 'θ ~ U, ψ = 0'}"
            f"{f', AltGD n_d = {n_d}' if n_d > 1 else ''}; ρ1 = ρ2 = 1/2 (standard), ρ1 = 1, ρ2 = 0 (WGAN)")
    lines = [head, "", "| method | eigenvalues of v' (numerical) | closed form (thesis) | "
                       "||(θ−x0, ψ)|| SimGD | ||(θ−x0, ψ)|| AltGD |", "|---|---|---|---|---|"]
    for r in rows:
        closed = format_eigs(r.closed) if r.closed is not None else (
            "none: v is discontinuous at the equilibrium (Lemma 3.9)" if r.method == "wgan-gp" else "—")
        if r.method == "nk" and r.closed is not None:
            closed += " (derived)"
        lines.append(f"| {r.method} | {format_eigs(r.eigenvalues) if r.eigenvalues is not None else 'n too large'} "
                     f"| {closed} | {_norm_str(r.norm_sim)} | {_norm_str(r.norm_alt)} |")
    return "\n".join(lines)


def _csv(rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["method", "eigenvalues", "closed_form", "norm_simgd", "norm_altgd", "description"])
    for r in rows:
        w.writerow([r.method, format_eigs(r.eigenvalues) if r.eigenvalues is not None else "",
                    format_eigs(r.closed) if r.closed is not None else "", r.norm_sim, r.norm_alt, r.description])
    return buf.getvalue()

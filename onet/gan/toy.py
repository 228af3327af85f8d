"""The Ellipse and Four Points games of thesis §1.2.2, §5.4 and §6.5, built from the library.

Both use the quadratic discriminator D_ψ(x) = ψ1 x1² + ψ2 x2² (the logit is
−D_ψ in onet's sign convention) and a target of width w and height h
(θ* = (w/2, h/2), ψ* = 0):

- ellipse: G_θ(z) = (θ1 cos z, θ2 sin z), z ~ U[0, 2π]; data (w/2 cos z, h/2 sin z).
  Expectations use K = 64 equally spaced z. Converges unregularised (Lemma 5.5).
- four-points: p_θ uniform on (±θ1, ±θ2), data on (±w/2, ±h/2). K_DD is singular:
  unregularised training keeps oscillating (for w = h the Jacobian has imaginary
  eigenvalues); R1 / R2 make it converge (§6.5).

Training is deterministic gradient descent (AltGD or SimGD, h_g = h_d = h)
from θ0 = (1.6 w/2, 0.6 h/2), ψ0 = 0. The parameter error is
|| |θ| − θ* || (G is symmetric under θ_i → −θ_i); W1(p_θ, p_D) is exact.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from onet.gan import losses as L
from onet.gan import regularizers as R
from onet.gan.dirac import format_eigs, simulate, sort_complex
from onet.gan.metrics import wasserstein1
from onet.gan.plot import COLORS, Figure
from onet.utils.io import write_bytes_atomic, write_text_atomic

GAMES = ("ellipse", "four-points")
N_Z = 64


@dataclass
class ToyGame:
    """One toy game: name, penalty ('none', 'r1', 'r2'), γ, generator loss, target (w, h)."""

    name: str
    reg: str = "none"
    gamma: float = 1.0
    loss: str = "standard"
    width: float = 1.0
    height: float = 1.0

    n = 2

    def __post_init__(self):
        if self.name not in GAMES:
            raise ValueError(f"unknown toy game {self.name!r}; choose ellipse or four-points")
        if self.reg not in ("none", "r1", "r2"):
            raise ValueError(f"unknown toy regularizer {self.reg!r}; choose none, r1 or r2")

    @property
    def theta_star(self) -> torch.Tensor:
        return torch.tensor([self.width / 2, self.height / 2], dtype=torch.float64)

    def samples(self, theta: torch.Tensor) -> torch.Tensor:
        """The support points of p_θ (K, 2), equally weighted."""
        if self.name == "ellipse":
            z = torch.arange(N_Z, dtype=torch.float64) * (2 * math.pi / N_Z)
            return torch.stack([theta[0] * z.cos(), theta[1] * z.sin()], 1)
        signs = torch.tensor([[1, 1], [1, -1], [-1, 1], [-1, -1]], dtype=torch.float64)
        return signs * theta

    def field(self, w: torch.Tensor, *, create_graph: bool = False) -> torch.Tensor:
        """v = (−∇_θ loss_G, −∇_ψ loss_D) at w = (θ, ψ) (4,). Returns (4,)."""
        with torch.enable_grad():
            w = w if w.requires_grad else w.detach().requires_grad_(True)
            theta, psi = w[:2], w[2:]

            def disc(x):  # the thesis's D_ψ(x) = ψ1 x1² + ψ2 x2²; onet's logit is its negative
                return -(x.pow(2) @ psi)

            fake, real = self.samples(theta), self.samples(self.theta_star)
            loss_g = L.g_loss(disc(fake), self.loss)
            loss_d = L.d_loss(disc(real), disc(fake))
            if self.reg == "r1":
                loss_d = loss_d + R.r1_penalty(disc, real, self.gamma)
            elif self.reg == "r2":
                loss_d = loss_d + R.r2_penalty(disc, fake, self.gamma)
            (gg,) = torch.autograd.grad(loss_g, w, create_graph=True)
            (gd,) = torch.autograd.grad(loss_d, w, create_graph=create_graph)
        v = torch.cat([-gg[:2], -gd[2:]])
        return v if create_graph else v.detach()

    def eigenvalues(self) -> np.ndarray:
        """Eigenvalues of the Jacobian of v at the equilibrium (θ*, 0)."""
        w = torch.cat([self.theta_star, torch.zeros(2, dtype=torch.float64)])
        jac = torch.autograd.functional.jacobian(lambda u: self.field(u, create_graph=True), w)
        return sort_complex(torch.linalg.eigvals(jac).numpy())

    def start(self) -> torch.Tensor:
        return torch.cat([self.theta_star * torch.tensor([1.6, 0.6], dtype=torch.float64),
                          torch.zeros(2, dtype=torch.float64)])

    def parameter_error(self, traj: np.ndarray) -> np.ndarray:
        """|| |θ_k| − θ* || for iterates (T, 4) -> (T,)."""
        return np.linalg.norm(np.abs(traj[:, :2]) - self.theta_star.numpy(), axis=1)

    def w1(self, theta) -> float:
        with torch.no_grad():
            return wasserstein1(self.samples(torch.as_tensor(theta, dtype=torch.float64)).numpy(),
                                self.samples(self.theta_star).numpy())


@dataclass
class ToyResult:
    game: ToyGame
    scheme: str
    h: float
    iterations: np.ndarray    # (T,)
    error: np.ndarray         # (T,) parameter error
    w1: np.ndarray            # (C,) W1 at checkpoints
    w1_iterations: np.ndarray  # (C,)
    eigenvalues: np.ndarray


def train_toy(game: ToyGame, *, h: float = 0.1, steps: int = 3000, scheme: str = "alt") -> ToyResult:
    """Run AltGD / SimGD for `steps` iterations; parameter error each iteration, W1 at 101 checkpoints."""
    traj = simulate(game, game.start(), scheme=scheme, h_g=h, h_d=h, steps=steps)
    err = game.parameter_error(traj)
    idx = np.unique(np.linspace(0, steps, 101).astype(int))
    w1 = np.array([game.w1(traj[i, :2]) if np.isfinite(traj[i]).all() else np.nan for i in idx])
    return ToyResult(game, scheme, h, np.arange(steps + 1), err, w1, idx, game.eigenvalues())


def plot_toy(res: ToyResult) -> bytes:
    """Parameter error and W1 over iterations, log scale."""
    fig = Figure(1, 2, size=(430, 380))
    for col, (x, y, label) in enumerate(((res.iterations, res.error, "|| |theta| - theta* ||"),
                                         (res.w1_iterations, res.w1, "W1(p_theta, p_D)"))):
        ok = y[np.isfinite(y) & (y > 0)]
        lo = 10 ** math.floor(math.log10(max(ok.min(), 1e-12))) if len(ok) else 1e-6
        hi = 10 ** math.ceil(math.log10(ok.max())) if len(ok) else 1.0
        p = fig.panel(0, col, (0, x[-1]), (lo, max(hi, 10 * lo)), logy=True, xlabel="iteration", ylabel=label,
                      title=f"{res.game.name}, reg={res.game.reg}, {res.scheme}")
        p.line(x, y, COLORS["alt"] if res.scheme == "alt" else COLORS["sim"])
    return fig.png()


def format_toy(res: ToyResult) -> str:
    g = res.game
    head = (f"{g.name}: target w = {g.width:g}, h = {g.height:g}, reg = {g.reg}"
            f"{f' (γ = {g.gamma:g})' if g.reg != 'none' else ''}, {g.loss} loss, "
            f"{'AltGD' if res.scheme == 'alt' else 'SimGD'}, h_g = h_d = {res.h:g}; "
            f"eigenvalues of v' at the equilibrium: {format_eigs(res.eigenvalues)}")
    lines = [head, "", "| iteration | parameter error | W1(p_θ, p_D) |", "|---|---|---|"]
    for i, it in enumerate(res.w1_iterations):
        if i % 10 == 0:
            lines.append(f"| {it} | {res.error[it]:.3e} | {res.w1[i]:.3e} |")
    tail = res.error[-max(len(res.error) // 10, 1):]
    lines += ["", f"last 10% of iterations: parameter error min {tail.min():.3e}, max {tail.max():.3e}"]
    return "\n".join(lines)


def run_toy(name: str, *, reg: str = "none", gamma: float = 1.0, h: float = 0.1, steps: int = 3000,
            scheme: str = "alt", loss: str = "standard", width: float = 1.0, height: float = 1.0,
            out_dir: str | Path | None = None, print_fn=print) -> ToyResult:
    """`onet gan toy`: train, print the table, write <name>_<reg>_<scheme>.{md,csv,png} into out_dir."""
    game = ToyGame(name, reg=reg, gamma=gamma, loss=loss, width=width, height=height)
    res = train_toy(game, h=h, steps=steps, scheme=scheme)
    md = format_toy(res)
    print_fn(md)
    if out_dir is not None:
        stem = Path(out_dir) / f"{name}_{reg}_{scheme}"
        write_text_atomic(stem.with_suffix(".md"), md + "\n")
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["iteration", "parameter_error", "w1"])
        w1 = dict(zip(res.w1_iterations.tolist(), res.w1.tolist()))
        for it, e in zip(res.iterations.tolist(), res.error.tolist()):
            w.writerow([it, e, w1.get(it, "")])
        write_text_atomic(stem.with_suffix(".csv"), buf.getvalue())
        write_bytes_atomic(stem.with_suffix(".png"), plot_toy(res))
    return res

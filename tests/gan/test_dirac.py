import math

import numpy as np
import pytest
import torch

from onet.gan import dirac
from onet.gan.dirac import METHODS, DiracGAN, closed_form, simulate, update_operator_jacobian

KW = dict(gamma=0.3, sigma=0.7, eta=0.5)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "wgan-gp"])
def test_1d_eigenvalues_match_the_closed_forms(method):
    game = DiracGAN(method, dirac.target(1), **KW)
    want = closed_form(method, 0.0, 1, **KW)
    assert np.abs(game.eigenvalues() - want).max() < 1e-6


def test_gan_md_eigenvalue_table_at_other_parameters():
    # GAN.md: ±iρ1; −γ/2 ± sqrt(γ²/4 − ρ1²) (real above γ = 2|ρ1| = 1); −ρ2σ²/2 ± ...; −γρ1² ± iρ1
    x0 = dirac.target(1)
    r1 = DiracGAN("r1", x0, gamma=3.0).eigenvalues()
    assert np.allclose(r1, [-1.5 - math.sqrt(2.25 - 0.25), -1.5 + math.sqrt(2.25 - 0.25)], atol=1e-6)
    crit = DiracGAN("instance-noise", x0, sigma=math.sqrt(2.0)).eigenvalues()   # σ² = 2|ρ1|/ρ2
    assert np.allclose(crit, [-0.5, -0.5], atol=1e-6)
    assert np.allclose(DiracGAN("wgan", x0).eigenvalues(), [-1j, 1j], atol=1e-6)
    cons = DiracGAN("consensus", x0, gamma=2.0).eigenvalues()
    assert np.allclose(cons.real, -2.0 * 0.25, atol=1e-6) and np.allclose(np.abs(cons.imag), 0.5, atol=1e-6)


@pytest.mark.parametrize("method", ["gan", "ns-gan", "wgan", "instance-noise", "r1", "r2", "ns-r1"])
def test_nd_eigenvalue_groups_match_lemmas_4_3_4_5_4_7(method):
    x0 = dirac.target(6)
    game = DiracGAN(method, x0, **KW)
    want = closed_form(method, float(x0.pow(2).sum()), 6, **KW)
    assert np.abs(game.eigenvalues() - want).max() < 1e-6


def test_consensus_adds_minus_gamma_rho1_squared_to_the_real_part():
    x0 = dirac.target(1)
    plain, cons = DiracGAN("gan", x0).eigenvalues(), DiracGAN("consensus", x0, gamma=0.8).eigenvalues()
    assert np.allclose(cons.real - plain.real, -0.8 * 0.25, atol=1e-6)
    assert np.allclose(np.sort(cons.imag), np.sort(plain.imag), atol=1e-6)


def test_lemma_3_4_simgd_weighted_norm_strictly_grows():
    h_g, h_d = 0.2, 0.05
    game = DiracGAN("gan", dirac.target(1))
    traj = simulate(game, torch.tensor([1.0, 1.0]), scheme="sim", h_g=h_g, h_d=h_d, steps=300)
    weighted = traj[:, 0] ** 2 / h_g + traj[:, 1] ** 2 / h_d
    assert np.all(np.diff(weighted) > 0)
    eig = torch.linalg.eigvals(update_operator_jacobian(game, scheme="sim", h_g=h_g, h_d=h_d)).numpy()
    assert np.allclose(np.abs(eig), math.sqrt(1 + h_g * h_d * 0.25), atol=1e-9)


@pytest.mark.parametrize("h, n_g, n_d", [(0.5, 1, 3), (1.0, 2, 2), (3.0, 1, 2), (4.0, 2, 1)])
def test_lemma_3_5_altgd_eigenvalues_below_and_above_alpha_2(h, n_g, n_d):
    game = DiracGAN("gan", dirac.target(1))
    alpha = math.sqrt(n_g * n_d * h * h) * 0.5
    eig = torch.linalg.eigvals(update_operator_jacobian(game, scheme="alt", h_g=h, h_d=h, n_g=n_g, n_d=n_d)).numpy()
    want = dirac.altgd_closed_form(alpha)
    assert np.abs(dirac.sort_complex(eig) - dirac.sort_complex(want)).max() < 1e-6
    if alpha <= 2:
        assert np.allclose(np.abs(eig), 1.0, atol=1e-6)
    else:
        assert np.abs(eig).max() > 1 + 1e-3


def test_r1_r2_runs_converge_wgan_gp_does_not():
    x0, w0 = dirac.target(1), torch.tensor([1.0, 1.0])
    dist = {}
    for method in ("r1", "r2", "wgan-gp", "gan"):
        game = DiracGAN(method, x0, gamma=1.0)
        dist[method] = [np.linalg.norm(simulate(game, w0, scheme=s, h_g=0.1, h_d=0.1, steps=700)[-1])
                        for s in ("sim", "alt")]
    assert max(dist["r1"] + dist["r2"]) < 1e-6
    assert min(dist["wgan-gp"]) > 0.05 and min(dist["gan"]) > 0.5


def test_run_dirac_writes_table_and_pngs(tmp_path):
    out = []
    rows = dirac.run_dirac(["gan", "r1"], steps=20, out_dir=tmp_path, progress=False, print_fn=out.append)
    assert [r.method for r in rows] == ["gan", "r1"]
    assert (tmp_path / "gan.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "r1.png").exists()
    text = (tmp_path / "dirac.md").read_text()
    assert "| r1 | -0.1500±0.4770i | -0.1500±0.4770i |" in text and text.strip() == out[0].strip()
    rows = dirac.run_dirac(["r1"], dim=4, steps=10, out_dir=tmp_path / "nd", progress=False, print_fn=out.append)
    assert "×3" in dirac.format_eigs(rows[0].eigenvalues) and (tmp_path / "nd" / "r1.png").exists()


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown Dirac-GAN method 'gan2'"):
        DiracGAN("gan2", dirac.target(1))

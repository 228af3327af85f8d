import zlib

import numpy as np
import pytest
import torch
from torch import nn

from onet.gan import bench2d as B


def test_distributions_have_the_documented_supports():
    gen = torch.Generator().manual_seed(0)
    line = B.sample_data("line", 500, gen)
    assert (line[:, 1] == 0).all() and line[:, 0].abs().max() <= 1
    circle = B.sample_data("circle", 500, gen)
    assert torch.allclose(circle.norm(dim=1), torch.ones(500, dtype=circle.dtype), atol=1e-6)
    sq = B.sample_data("four-squares", 500, gen)
    assert ((sq.abs() - 0.5).abs() <= 0.3 + 1e-6).all()
    lines = B.sample_data("four-lines", 500, gen)
    assert set(np.round(lines[:, 0].numpy(), 6)) == {-0.75, -0.25, 0.25, 0.75}
    eight = B.sample_data("eight", 4000, gen)
    assert (eight.norm(dim=1) - 1).abs().max() < 0.15
    with pytest.raises(ValueError, match="unknown distribution 'moons'"):
        B.sample_data("moons", 3, gen)


def test_stacked_mlp_slice_equals_an_nn_module_with_the_same_weights():
    gen = torch.Generator().manual_seed(0)
    for name, act in (("leaky", nn.LeakyReLU(0.2)), ("tanh", nn.Tanh())):
        mlp = B.StackedMLP(3, 2, 8, 1, name, gen, "cpu")
        x = torch.randn(3, 5, 2)
        out, r = mlp(x), 1
        layers = []
        for i in range(0, 8, 2):
            lin = nn.Linear(*mlp.params[i].shape[1:])
            lin.weight.data, lin.bias.data = mlp.params[i][r].T.detach(), mlp.params[i + 1][r, 0].detach()
            layers += [lin, act] if i < 6 else [lin]
        assert torch.allclose(out[r], nn.Sequential(*layers)(x[r]), atol=1e-12)


@pytest.mark.parametrize("opt", ["sgd", "rmsprop"])
def test_rms_sgd_step_matches_torch(opt):
    w = torch.randn(2, 4, 3)
    ref = [nn.Parameter(w[i].clone()) for i in range(2)]
    lrs = [1e-2, 5e-3]
    torch_opts = [torch.optim.SGD([p], lr=lr) if opt == "sgd" else
                  torch.optim.RMSprop([p], lr=lr, alpha=0.99, eps=1e-8) for p, lr in zip(ref, lrs)]
    v = torch.zeros_like(w)
    lr, rms = torch.tensor(lrs).view(2, 1, 1), torch.full((2, 1, 1), float(opt == "rmsprop"))
    for _ in range(5):
        g = torch.randn(2, 4, 3)
        B.rms_sgd_step(w, v, g, lr, rms)
        for i, (p, o) in enumerate(zip(ref, torch_opts)):
            p.grad = g[i].clone()
            o.step()
    for i in range(2):
        assert torch.allclose(w[i], ref[i].detach(), atol=1e-10)


def test_run_bench2d_tiny_grid_writes_tables_and_resumes(tmp_path):
    grid = B.Grid(iters=12, widths=(8,), activations=("leaky",), sgd_lrs=(5e-2,), rms_lrs=(5e-4,), gammas=(1.0,),
                  checkpoints=2, eval_samples=128, select_samples=64)
    kw = dict(grid=grid, out_dir=tmp_path, methods=("unreg", "r1", "wgan-gp-5"), distributions=("line", "eight"),
              progress=False)
    lines = []
    res = B.run_bench2d(print_fn=lines.append, workers=2, **kw)   # groups and assignments in 2 processes
    assert set(res.table) == {"line", "eight"} and all(np.isfinite(v) for d in res.table.values() for v in d.values())
    assert all(0 < f < 0.2 for f in res.floor.values())
    assert len(res.best) == 6 and (tmp_path / "samples.png").read_bytes()[:4] == b"\x89PNG"
    assert "| line |" in (tmp_path / "bench2d.md").read_text()
    assert len((tmp_path / "runs.csv").read_text().splitlines()) == 1 + 2 * (2 + 2 + 2)
    lines.clear()
    again = B.run_bench2d(print_fn=lines.append, workers=1, **kw)
    assert any("already trained" in s for s in lines)
    assert [b["w1_select"] for b in again.best] == [b["w1_select"] for b in res.best]


def test_groups_train_dearest_first_and_the_order_changes_no_result(tmp_path):
    grid = B.Grid(iters=6, widths=(8, 16), activations=("leaky",), sgd_lrs=(5e-2,), rms_lrs=(5e-4,), gammas=(1.0,),
                  checkpoints=1, eval_samples=64, select_samples=32)
    lines = []
    res = B.run_bench2d(grid=grid, out_dir=None, methods=("unreg", "r1", "wgan-gp-5"), distributions=("line",),
                        progress=False, workers=1, print_fn=lines.append)
    trained = [s.split(":")[1].strip() for s in lines if "GANs x" in s]
    # n_d = 5 at width 16 is the dearest group, the unregularised ones at width 8 the cheapest
    assert trained[0] == "16-leaky_gp_nd5" and trained[-1] in ("8-leaky_none_nd1", "8-leaky_zc_nd1"), trained
    assert len(trained) == 6
    # seeds come from the group keys, not the order: a group retrained alone gives the chosen runs' numbers
    runs = [r for r in B.grid_runs(grid, ("wgan-gp-5",), ("line",)) if r.width == 16]
    sel, _ = B.train_group(runs, grid, 5, seed=zlib.crc32(b"16-leaky_gp_nd5"), device="cpu", progress=False)
    chosen = next(b for b in res.best if (b["method"], b["arch"]) == ("wgan-gp-5", "16-leaky"))
    j = next(j for j, r in enumerate(runs) if (r.opt, r.lr, r.gamma) == (chosen["opt"], chosen["lr"], chosen["gamma"]))
    assert chosen["w1_select"] == pytest.approx(float(np.nanmean(sel[j])), rel=1e-6)


def _small_group():
    runs = [r for r in B.grid_runs(B.QUICK, ("r1", "r2"), ("line", "eight")) if r.act == "tanh"]
    return runs, B.Grid(iters=6, widths=(16,), checkpoints=1, select_samples=32)


def test_compiled_group_trains_like_the_eager_one():
    runs, grid = _small_group()
    eager = B.train_group(runs, grid, 1, seed=3, device="cpu", progress=False)
    compiled = B.train_group(runs, grid, 1, seed=3, device="cpu", progress=False, compile=True)
    # the same program with fused elementwise loops: equal up to float rounding
    for a, b in zip(eager[1][0], compiled[1][0]):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    assert np.allclose(eager[0], compiled[0], rtol=1e-3)


def test_compile_failure_falls_back_to_eager_and_says_so(monkeypatch, capsys):
    def broken(fn, **kw):
        def run(*args):
            raise RuntimeError("no C++ compiler")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    runs, grid = _small_group()
    got = B.train_group(runs, grid, 1, seed=3, device="cpu", progress=False, compile=True)
    assert "torch.compile failed (RuntimeError: no C++ compiler); running eagerly" in capsys.readouterr().err
    ref = B.train_group(runs, grid, 1, seed=3, device="cpu", progress=False)
    assert all(torch.equal(a, b) for a, b in zip(got[1][0], ref[1][0]))


def test_bad_compile_value_is_refused():
    with pytest.raises(ValueError, match="compile must be auto, on or off"):
        B.run_bench2d(quick=True, out_dir=None, compile="yes", progress=False)

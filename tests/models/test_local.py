"""The local-feature model (models/local.py): planes, pooling, sampling, eval closures, config checks."""

import math

import pytest
import torch

from onet.models import build_model, check_model_config
from onet.models.local import PLANES, LocalDecoder, TriplanePointnet, plane_cells, sample_planes
from onet.utils.errors import ConfigError

LOCAL = {"encoder": "pointnet_triplane", "decoder": "local", "c_dim": 8, "z_dim": 0,
         "encoder_kwargs": {"hidden_dim": 8, "plane_resolution": 8, "unet_levels": 2, "unet_channels": 4},
         "decoder_kwargs": {"hidden_size": 8, "n_blocks": 2}}


def test_sampling_at_cell_centres_reads_the_cell_that_pooling_writes():
    torch.manual_seed(0)
    R, pad = 8, 0.1
    planes = torch.randn(1, 3, 2, R, R)
    # cell centres in [0, 1] -> box coordinates
    idx = torch.randint(0, R, (1, 50, 3))
    p = ((idx + 0.5) / R - 0.5) * (1 + pad)
    cells = plane_cells(p, R, pad)  # (1, 3, 50)
    want = sum(planes[0, k].reshape(2, R * R)[:, cells[0, k]] for k in range(3)).t()  # (50, 2)
    assert torch.allclose(sample_planes(planes, p, pad)[0], want, atol=1e-5)
    # the first axis of a plane indexes its columns
    a, b = PLANES[0]
    assert torch.equal(cells[0, 0], idx[0, :, b] * R + idx[0, :, a])


def test_plane_features_are_cell_means_and_ignore_point_order():
    torch.manual_seed(0)
    enc = TriplanePointnet(c_dim=3, hidden_dim=4, n_blocks=1, plane_resolution=4, unet_levels=0)
    p = torch.rand(2, 40, 3) - 0.5
    planes = enc(p)
    assert planes.shape == (2, 3, 3, 4, 4)
    perm = torch.randperm(40)
    assert torch.allclose(enc(p[:, perm]), planes, atol=1e-6)
    feats = enc.fc_c(enc.blocks[0](enc.fc_pos(p)))  # (2, 40, 3): one block, no pooling
    cells = plane_cells(p, 4, 0.1)
    for k in range(3):
        flat = planes[:, k].reshape(2, 3, 16)
        for cell in cells[0, k].unique():
            inside = cells[0, k] == cell
            assert torch.allclose(flat[0, :, cell], feats[0, inside].mean(0), atol=1e-6)
        empty = torch.ones(16, dtype=torch.bool)
        empty[cells[0, k]] = False
        assert torch.all(flat[0][:, empty] == 0)


def test_local_pooling_mixes_only_points_that_share_a_cell():
    torch.manual_seed(0)
    enc = TriplanePointnet(c_dim=2, hidden_dim=4, n_blocks=2, plane_resolution=4, unet_levels=0)
    for prm in enc.parameters():  # fc_1 starts at zero: give the blocks an effect
        torch.nn.init.normal_(prm, std=0.5)
    # two points in opposite corner cells (no plane cell in common) and a third one sharing their cells
    p = torch.tensor([[[-0.45, -0.45, -0.45], [0.45, 0.45, 0.45]]])
    base = enc(p)
    moved = p.clone()
    moved[0, 1] = torch.tensor([0.40, 0.40, 0.40])  # same cells, other position
    out = enc(moved)
    cells = plane_cells(p, 4, 0.1)[0, :, 0]
    for k in range(3):
        # the first point's cells do not see the second point move
        assert torch.allclose(out[0, k].reshape(2, 16)[:, cells[k]], base[0, k].reshape(2, 16)[:, cells[k]])


def _pool_reference(net, cells, n_cells, reduce):
    """The pooling as written first: scatter_reduce over an index expanded across channels."""
    B, T, H = net.shape
    index = cells.unsqueeze(2).expand(B, T, H)
    return net.new_zeros(B, n_cells, H).scatter_reduce(1, index, net, reduce=reduce, include_self=False)


@pytest.mark.parametrize("reduce", ["amax", "mean"])
def test_row_pooling_equals_the_scatter_reduce_reference_values_and_gradients(reduce):
    from onet.models.local import _pool
    torch.manual_seed(0)
    B, T, H, n = 3, 40, 5, 16
    net = torch.randn(B, T, H, dtype=torch.float64)
    net[:, 1] = net[:, 0]  # exact ties: both rows share the gradient of their cell's max
    cells = torch.randint(0, n, (B, T))
    cells[:, 1] = cells[:, 0]
    x = net.clone().requires_grad_()
    want = _pool_reference(x, cells, n, reduce)
    flat = (cells + torch.arange(B).view(B, 1) * n).reshape(-1)
    y = net.clone().requires_grad_()
    got = _pool(y.reshape(-1, H), flat, B * n, reduce).view(B, n, H)
    assert torch.equal(got, want)
    g = torch.randn(B, n, H, dtype=torch.float64)
    (gx,), (gy,) = torch.autograd.grad(want, x, g), torch.autograd.grad(got, y, g)
    assert torch.allclose(gx, gy, atol=1e-12)
    if reduce == "amax":
        assert gy[:, 1].abs().sum() > 0 and torch.allclose(gy[:, 0], gy[:, 1])


@pytest.mark.parametrize("R", [2, 5, 8])
def test_corner_sum_sampling_equals_grid_sample_values_and_gradients(R):
    """The training path (one gather of 12 corners) reads what grid_sample reads: bilinear,
    border padding, align_corners=False; points outside the box and on the borders included."""
    from onet.models.local import _grid_sample_planes
    torch.manual_seed(R)
    B, C, T, pad = 3, 4, 300, 0.1
    p = 1.3 * (torch.rand(B, T, 3) - 0.5)  # some outside the 1.1 box
    p[0, :6] = torch.tensor([0.55, -0.55, 0.0]).repeat(6, 1) * torch.tensor([[1.0], [-1], [0.5], [2], [0], [1e-7]])
    base = torch.randn(B * 3, C, R, R)
    for layout in (torch.contiguous_format, torch.channels_last):  # the U-Net's output is channels-last
        x = base.contiguous(memory_format=layout).requires_grad_()
        y = base.clone().requires_grad_()
        got = sample_planes(x.reshape(B, 3, C, R, R), p, pad)
        want = _grid_sample_planes(y.reshape(B, 3, C, R, R), p, pad)
        assert got.shape == (B, T, C) and torch.allclose(got, want, atol=1e-5)
        g = torch.randn(B, T, C)
        (gx,), (gy,) = torch.autograd.grad(got, x, g), torch.autograd.grad(want, y, g)
        assert torch.allclose(gx, gy, atol=1e-4)
    # bf16 autocast: the sampling stays fp32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = sample_planes(base.reshape(B, 3, C, R, R), p, pad)
    assert low.dtype == torch.float32 and torch.allclose(low, want, atol=1e-5)


def test_sampling_differentiates_through_the_points_and_reads_one_cell_planes():
    from onet.models.local import _grid_sample_planes
    torch.manual_seed(0)
    planes = torch.randn(2, 3, 4, 6, 6)
    q = (torch.rand(2, 50, 3) - 0.5).requires_grad_()
    (g,) = torch.autograd.grad(sample_planes(planes, q, 0.1).sum(), q, create_graph=True)
    assert g.requires_grad and g.abs().sum() > 0  # refinement's double backprop goes through here
    one = torch.randn(2, 3, 4, 1, 1)  # R = 1: every point reads the single cell
    assert torch.allclose(sample_planes(one, q.detach(), 0.1), one.sum(1).view(2, 1, 4).expand(2, 50, 4), atol=1e-6)
    assert torch.allclose(sample_planes(one, q.detach(), 0.1), _grid_sample_planes(one, q.detach(), 0.1))
    for none in (torch.zeros(2, 0, 3), torch.zeros(2, 0, 3, requires_grad=True)):  # no points: no features
        assert sample_planes(planes, none, 0.1).shape == (2, 0, 4)


def test_encoder_pools_over_occupied_cells_as_over_the_full_planes():
    """The blocks' max-pools run over the occupied cells only; the planes, and the gradients,
    are those of pooling over every cell of every plane."""
    from onet.models.local import _pool
    torch.manual_seed(0)
    enc = TriplanePointnet(c_dim=3, hidden_dim=4, n_blocks=3, plane_resolution=4, unet_levels=0).double()
    for prm in enc.parameters():
        torch.nn.init.normal_(prm, std=0.5)
    p = (torch.rand(2, 30, 3, dtype=torch.float64) - 0.5)
    p[:, 1] = p[:, 0]  # shared cells and exact ties

    def reference(p):
        B, T, _ = p.shape
        R, n_cells = 4, 48
        flat = (plane_cells(p, R, 0.1) + torch.arange(3).view(1, 3, 1) * R * R
                + torch.arange(B).view(B, 1, 1) * n_cells).reshape(-1)
        net = enc.blocks[0](enc.fc_pos(p))
        for block in enc.blocks[1:]:
            pooled = _pool(net.repeat(1, 3, 1).reshape(-1, 4), flat, B * n_cells, "amax")
            net = block(torch.cat([net, pooled.index_select(0, flat).view(B, 3, T, 4).sum(1)], dim=2))
        planes = _pool(enc.fc_c(net).repeat(1, 3, 1).reshape(-1, 3), flat, B * n_cells, "mean")
        return planes.reshape(B * 3, R, R, 3).permute(0, 3, 1, 2).reshape(B, 3, 3, R, R)

    got, want = enc(p), reference(p)
    assert torch.allclose(got, want, atol=1e-12)
    g = torch.randn_like(got)
    grads = [torch.autograd.grad(out, list(enc.parameters()), g) for out in (enc(p), reference(p))]
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-10)


def test_unet_skip_concatenation_equals_torch_cat_values_and_gradients(monkeypatch):
    """The U-Net's cat hands its inputs dense channels-last gradients (a speed-up): the same
    output and the same gradients, for the input and every weight, as torch.cat."""
    import onet.models.local as local
    torch.manual_seed(0)
    unet = local.UNet2d(5, 6, channels=4, levels=3).double()
    x = torch.randn(3, 5, 8, 8, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    g = torch.randn(3, 6, 8, 8, dtype=torch.float64)

    def run():
        out = unet(x)
        return out, torch.autograd.grad(out, [x, *unet.parameters()], g)

    out, grads = run()
    monkeypatch.setattr(local._CatChannels, "apply", lambda *xs: torch.cat(xs, dim=1))
    want, want_grads = run()
    assert torch.equal(out, want)
    for a, b in zip(grads, want_grads):
        assert torch.allclose(a, b, atol=1e-12)
    # the gradients the concatenation hands back are dense channels-last
    a, b = torch.randn(2, 3, 4, 4).requires_grad_(), torch.randn(2, 2, 4, 4).requires_grad_()
    monkeypatch.undo()
    out = local._CatChannels.apply(a, b)
    ga, gb = torch.autograd.grad(out, [a, b], torch.randn(2, 5, 4, 4).contiguous(memory_format=torch.channels_last))
    assert ga.is_contiguous(memory_format=torch.channels_last) and gb.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("levels", [0, 4])
def test_eval_closures_equal_the_forward_and_are_differentiable(levels):
    torch.manual_seed(0)
    model = build_model({**LOCAL, "decoder_kwargs": {**LOCAL["decoder_kwargs"], "fourier_levels": levels}}).eval()
    x = torch.rand(3, 100, 3) - 0.5
    p = 1.1 * (torch.rand(3, 500, 3) - 0.5)
    c = model.encode_inputs(x)
    with torch.no_grad():
        want = model.decode(p, None, c)
    fn = model.make_eval_fn(c, chunk_points=128)
    assert torch.allclose(fn(p), want, atol=1e-6)
    assert fn(p[:, :0]).shape == (3, 0)
    low = model.make_eval_fn(c, precision="bf16")(p)
    assert (low - want).abs().max() < 0.05 * want.abs().max() + 1e-3
    field = model.make_field_fn(c[1:2])
    q = p[1:2, :20].clone().requires_grad_(True)
    (g,) = torch.autograd.grad(field(q).sum(), q)
    eps = 1e-3
    e = torch.zeros_like(q)
    e[0, :, 0] = eps
    with torch.no_grad():
        fd = (field(q + e) - field(q - e)) / (2 * eps)
    assert torch.allclose(g[0, :, 0], fd[0], atol=2e-2, rtol=2e-2)
    with pytest.raises(ValueError, match="3, 8, R, R"):
        model.decoder(p, None, torch.zeros(3, 8))


def test_decoder_equals_its_per_block_formula_values_and_gradients():
    # the n_blocks fc_c layers run as one concatenated linear: the same function as
    # fc_p(p), then n times [+ fc_c_i(c(p)), block_i], relu, fc_out
    torch.manual_seed(0)
    model = build_model({**LOCAL, "decoder_kwargs": {"hidden_size": 8, "n_blocks": 3}}).train()
    dec = model.decoder
    for block in dec.blocks:  # fc_1 starts at 0: give every layer a gradient to compare
        torch.nn.init.normal_(block.fc_1.weight, std=0.3)
    p = 1.1 * (torch.rand(2, 50, 3) - 0.5)
    c = torch.randn(2, 3, 8, 8, 8, requires_grad=True)

    def reference():
        feat = sample_planes(c, p, dec.padding)
        net = dec.fc_p(p)
        for fc_c, block in zip(dec.fc_c, dec.blocks):
            net = block(net + fc_c(feat))
        return dec.fc_out(torch.relu(net)).squeeze(2)

    weights = torch.randn(2, 50)
    grads = []
    for run in (lambda: dec(p, None, c), reference):
        params = [c, *dec.parameters()]
        out = run()
        grads.append((out, torch.autograd.grad((out * weights).sum(), params)))
    (out, got), (want_out, want) = grads
    assert torch.allclose(out, want_out, atol=1e-5)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)


def test_fourier_levels_feed_fc_p_the_sines_and_cosines_of_the_octaves():
    dec = LocalDecoder(c_dim=4, hidden_size=8, n_blocks=1, padding=0.1, fourier_levels=3)
    assert dec.fc_p.in_features == 3 * 7
    p = torch.tensor([[[0.55, -0.275, 0.0]]])
    v = p / 1.1  # 0.5, -0.25, 0
    enc = dec._encode(p)[0, 0]
    assert torch.equal(enc[:3], p[0, 0])
    # sin(2^k pi v) axis by axis, k = 0, 1, 2; then the cosines
    want_sin = torch.tensor([[math.sin(f * math.pi * x) for f in (1, 2, 4)] for x in v[0, 0].tolist()]).flatten()
    want_cos = torch.tensor([[math.cos(f * math.pi * x) for f in (1, 2, 4)] for x in v[0, 0].tolist()]).flatten()
    assert torch.allclose(enc[3:12], want_sin, atol=1e-6) and torch.allclose(enc[12:], want_cos, atol=1e-6)
    assert LocalDecoder()._encode(p) is p  # 0 levels: p alone, the shipped model's state_dict
    with pytest.raises(ValueError, match="fourier_levels"):
        LocalDecoder(fourier_levels=-1)


def test_training_step_reaches_every_parameter():
    torch.manual_seed(0)
    model = build_model(LOCAL).train()
    batch = {"points": torch.rand(2, 64, 3) - 0.5, "points.occ": (torch.rand(2, 64) < 0.5).float(),
             "inputs": torch.rand(2, 100, 3) - 0.5}
    loss, parts = model.compute_loss(batch)
    loss.backward()
    # fc_1 of every ResNet block starts at 0, so the layers before it get no gradient in step 1;
    # everything else does
    missing = [n for n, prm in model.named_parameters()
               if (prm.grad is None or prm.grad.abs().sum() == 0) and "fc_0" not in n]
    assert not missing


def test_overfits_two_shapes_from_their_point_clouds():
    """A box and a ball, told apart only by their point clouds: the local model learns both."""
    torch.manual_seed(0)
    cfg = {**LOCAL, "encoder_kwargs": {**LOCAL["encoder_kwargs"], "plane_resolution": 16},
           "decoder_kwargs": {"hidden_size": 16, "n_blocks": 2}}
    model = build_model(cfg)
    n = 2000
    q = 1.1 * (torch.rand(2, n, 3) - 0.5)
    occ = torch.stack([(q[0].abs() < 0.3).all(1), q[1].norm(dim=1) < 0.4]).float()
    d = torch.randn(300, 3)
    sphere = 0.4 * d / d.norm(dim=1, keepdim=True)
    face = torch.randint(0, 3, (300,))
    cube = 0.6 * (torch.rand(300, 3) - 0.5)
    cube[torch.arange(300), face] = 0.3 * torch.sign(torch.randn(300))
    inputs = torch.stack([cube, sphere])
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(150):
        loss, _ = model.compute_loss({"points": q, "points.occ": occ, "inputs": inputs})
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = model(q, inputs) > 0
    iou = (pred & occ.bool()).sum(1) / (pred | occ.bool()).sum(1)
    assert iou.min() > 0.85, iou


def test_config_pairs_the_local_decoder_with_a_plane_encoder():
    check_model_config(LOCAL, input_type="pointcloud")
    with pytest.raises(ConfigError, match="do not fit"):
        check_model_config({**LOCAL, "encoder": "pointnet_resnet", "encoder_kwargs": {}})
    with pytest.raises(ConfigError, match="do not fit"):
        check_model_config({**LOCAL, "decoder": "cbn_resnet", "decoder_kwargs": {}})
    with pytest.raises(ConfigError, match="padding"):
        check_model_config({**LOCAL, "decoder_kwargs": {"padding": 0.2}})
    with pytest.raises(ConfigError, match="plane_resolution"):
        build_model({**LOCAL, "encoder_kwargs": {"plane_resolution": 6, "unet_levels": 3}})
    with pytest.raises(ConfigError, match="reads data.input_type 'pointcloud'"):
        check_model_config(LOCAL, input_type="img")

"""Importing reference ONet checkpoints: same logits as the reference network, clear errors otherwise.

For each published family a state dict with exactly the documented keys and shapes
(tests/fixtures/reference_onet_checkpoints/, a copy of the project's layout fixtures)
is filled with random values and run through the reference semantics written out
below with torch.nn.functional only (DESIGN §5: Conv1d point layers on (B, C, T)
features, conditional batch norm with running statistics in eval mode, ...), then
imported with `onet import-checkpoint` and run through onet.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from onet.cli import main
from onet.config import CONFIG_DIR, load_config
from onet.models import load_model
from onet.models.reference import FAMILIES, ReferenceCheckpointError, import_reference_checkpoint

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "reference_onet_checkpoints"
LAYOUT_FILES = {"img": "img_keys.json", "pointcloud": "pointcloud_keys.json", "voxels": "voxels_keys.json",
                "unconditional": "unconditional_keys.json"}
EPS = 1e-5  # BatchNorm eps of the reference layers (PyTorch's default)


def layout(family: str) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v) for k, v in json.loads((FIXTURES / LAYOUT_FILES[family]).read_text()).items()}


def random_state(family: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values for every documented key, scaled so activations stay O(1)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout(family).items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000, dtype=torch.int64)
        elif key.endswith("running_var"):
            state[key] = 0.5 + 1.5 * torch.rand(shape, generator=g)
        elif key.endswith("running_mean"):
            state[key] = 0.3 * torch.randn(shape, generator=g)
        elif len(shape) == 1:  # biases and batch-norm affine parameters
            base = 1.0 if (key.endswith("bn1.weight") or key.endswith("bn2.weight")
                           or key.endswith("downsample.1.weight") or "conv_gamma.bias" in key) else 0.0
            state[key] = base + 0.1 * torch.randn(shape, generator=g)
        else:
            fan_in = math.prod(shape[1:])
            state[key] = torch.randn(shape, generator=g) / math.sqrt(fan_in)
    return state


# ----------------------------------------------------------------- the reference semantics


def _conv1d(x, sd, name):
    return F.conv1d(x, sd[f"{name}.weight"], sd[f"{name}.bias"])


def _linear(x, sd, name):
    return F.linear(x, sd[f"{name}.weight"], sd.get(f"{name}.bias"))


def _calibrate(sd, name, x, dims):
    """Store x's per-channel statistics as running statistics, as training would have."""
    sd[f"{name}.running_mean"] = x.mean(dim=dims)
    sd[f"{name}.running_var"] = x.var(dim=dims) * torch.linspace(0.8, 1.2, x.shape[1])


def ref_cbn(x, c, sd, name, calibrate=False):
    """Conditional batch norm, eval mode. x (B, F, T), c (B, c_dim) -> (B, F, T)."""
    if calibrate:
        _calibrate(sd, f"{name}.bn", x, (0, 2))
    gamma = _conv1d(c.unsqueeze(2), sd, f"{name}.conv_gamma")  # (B, F, 1)
    beta = _conv1d(c.unsqueeze(2), sd, f"{name}.conv_beta")
    mean = sd[f"{name}.bn.running_mean"].view(1, -1, 1)
    var = sd[f"{name}.bn.running_var"].view(1, -1, 1)
    return gamma * (x - mean) / torch.sqrt(var + EPS) + beta


def ref_cbn_decoder(sd, p, c, calibrate=False):
    """DecoderCBatchNorm: p (B, T, 3), c (B, c_dim) -> logits (B, T)."""
    net = _conv1d(p.transpose(1, 2), sd, "decoder.fc_p")  # (B, H, T)
    for i in range(5):
        b = f"decoder.block{i}"
        h = _conv1d(F.relu(ref_cbn(net, c, sd, f"{b}.bn_0", calibrate)), sd, f"{b}.fc_0")
        net = net + _conv1d(F.relu(ref_cbn(h, c, sd, f"{b}.bn_1", calibrate)), sd, f"{b}.fc_1")
    return _conv1d(F.relu(ref_cbn(net, c, sd, "decoder.bn", calibrate)), sd, "decoder.fc_out").squeeze(1)


def _bn2d(x, sd, name, calibrate=False):
    if calibrate:
        _calibrate(sd, name, x, (0, 2, 3))
    return F.batch_norm(x, sd[f"{name}.running_mean"], sd[f"{name}.running_var"], sd[f"{name}.weight"],
                        sd[f"{name}.bias"], training=False, eps=EPS)


def ref_resnet18(sd, images, calibrate=False):
    """torchvision ResNet-18 (fc removed) under encoder.features, then encoder.fc. images (B, 3, H, W) in [0, 1]."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (images - mean) / std
    f = "encoder.features"
    x = F.relu(_bn2d(F.conv2d(x, sd[f"{f}.conv1.weight"], stride=2, padding=3), sd, f"{f}.bn1", calibrate))
    x = F.max_pool2d(x, 3, stride=2, padding=1)
    for layer in range(1, 5):
        for block in range(2):
            b = f"{f}.layer{layer}.{block}"
            stride = 2 if (layer > 1 and block == 0) else 1
            out = F.relu(_bn2d(F.conv2d(x, sd[f"{b}.conv1.weight"], stride=stride, padding=1), sd, f"{b}.bn1", calibrate))
            out = _bn2d(F.conv2d(out, sd[f"{b}.conv2.weight"], padding=1), sd, f"{b}.bn2", calibrate)
            if f"{b}.downsample.0.weight" in sd:
                x = _bn2d(F.conv2d(x, sd[f"{b}.downsample.0.weight"], stride=stride), sd, f"{b}.downsample.1", calibrate)
            x = F.relu(out + x)
    x = x.mean(dim=(2, 3))  # adaptive average pooling to 1x1
    return _linear(x, sd, "encoder.fc")


def _resnet_fc(x, sd, name):
    net = _linear(F.relu(x), sd, f"{name}.fc_0")
    dx = _linear(F.relu(net), sd, f"{name}.fc_1")
    shortcut = F.linear(x, sd[f"{name}.shortcut.weight"]) if f"{name}.shortcut.weight" in sd else x
    return shortcut + dx


def _pool_cat(net):
    return torch.cat([net, net.max(dim=1, keepdim=True).values.expand_as(net)], dim=2)


def ref_pointnet(sd, points):
    """ResnetPointnet: points (B, T, 3) -> c (B, 512)."""
    net = _resnet_fc(_linear(points, sd, "encoder.fc_pos"), sd, "encoder.block_0")
    for i in range(1, 5):
        net = _resnet_fc(_pool_cat(net), sd, f"encoder.block_{i}")
    return _linear(F.relu(net.max(dim=1).values), sd, "encoder.fc_c")


def ref_voxel_encoder(sd, voxels):
    """VoxelEncoder: voxels (B, 32, 32, 32) -> c (B, 256)."""
    net = F.conv3d(voxels.unsqueeze(1), sd["encoder.conv_in.weight"], sd["encoder.conv_in.bias"], padding=1)
    for i in range(4):
        net = F.conv3d(F.relu(net), sd[f"encoder.conv_{i}.weight"], sd[f"encoder.conv_{i}.bias"], stride=2, padding=1)
    return _linear(F.relu(net.reshape(net.shape[0], -1)), sd, "encoder.fc")


def ref_simple_decoder(sd, p, z):
    """Decoder 'simple' (no c): p (B, T, 3), z (B, z_dim) -> logits (B, T)."""
    net = _linear(p, sd, "decoder.fc_p") + _linear(z, sd, "decoder.fc_z").unsqueeze(1)
    for i in range(5):
        net = _resnet_fc(net, sd, f"decoder.block{i}")
    return _linear(F.relu(net), sd, "decoder.fc_out").squeeze(-1)


def ref_latent_encoder(sd, p, occ):
    """encoder_latent 'simple' (no c): p (B, T, 3), occ (B, T) -> mean, logstd (B, z_dim)."""
    e = "encoder_latent"
    net = _linear(occ.unsqueeze(-1), sd, f"{e}.fc_0") + _linear(p, sd, f"{e}.fc_pos")
    net = _linear(F.relu(net), sd, f"{e}.fc_1")
    net = _linear(F.relu(_pool_cat(net)), sd, f"{e}.fc_2")
    net = _linear(F.relu(_pool_cat(net)), sd, f"{e}.fc_3")
    net = net.max(dim=1).values
    return _linear(net, sd, f"{e}.fc_mean"), _linear(net, sd, f"{e}.fc_logstd")


# ----------------------------------------------------------------- tests


def save_reference(path: Path, state: dict) -> Path:
    torch.save({"model": state, "epoch_it": 17, "it": 123456, "loss_val_best": -0.7}, path)
    return path


def family_config(family: str, tmp_path: Path) -> dict:
    return load_config(CONFIG_DIR / Path(FAMILIES[family].onet_config).name, [f"out_dir={tmp_path / 'run'}"])


def import_and_load(family, state, tmp_path):
    ref = save_reference(tmp_path / "ref.pt", state)
    cfg = family_config(family, tmp_path)
    result = import_reference_checkpoint(ref, cfg, tmp_path / "onet.pt")
    assert result.family == family and result.n_tensors == len(state) and result.iteration == 123456
    model, _ = load_model(cfg, tmp_path / "onet.pt", torch.device("cpu"))
    return model


def assert_close(a, b, what):
    err = (a - b).abs().max().item()
    assert err <= 1e-4, f"{what}: max |onet - reference| = {err:.2e}"


def points(B, T=500, seed=1):
    return (torch.rand(B, T, 3, generator=torch.Generator().manual_seed(seed)) - 0.5) * 1.1


@pytest.mark.parametrize("family", ["img", "pointcloud", "voxels"])
def test_conditional_family_imports_with_the_reference_logits(family, tmp_path):
    sd = random_state(family)
    g = torch.Generator().manual_seed(2)

    def make_inputs(B):
        if family == "img":
            return torch.rand(B, 3, 224, 224, generator=g)
        if family == "pointcloud":
            return torch.randn(B, 300, 3, generator=g) * 0.3
        return (torch.rand(B, 32, 32, 32, generator=g) > 0.7).float()

    encode = {"img": ref_resnet18, "pointcloud": ref_pointnet, "voxels": ref_voxel_encoder}[family]
    with torch.no_grad():
        # running statistics that fit the activations, as in a trained network (keeps logits O(1))
        calib = make_inputs(4)
        c_calib = encode(sd, calib, calibrate=True) if family == "img" else encode(sd, calib)
        ref_cbn_decoder(sd, points(4, 2000, seed=5), c_calib, calibrate=True)
        B = 2
        inputs, p = make_inputs(B), points(B)
        c_ref = encode(sd, inputs)
        logits_ref = ref_cbn_decoder(sd, p, c_ref)
    assert logits_ref.std() > 0.1  # the comparison is not between near-constants

    model = import_and_load(family, sd, tmp_path)
    with torch.no_grad():
        c = model.encode_inputs(inputs)
        assert_close(c, c_ref, f"{family} code c")
        assert_close(model.decode(p, None, c), logits_ref, f"{family} logits")
    # the fast path that mesh extraction uses computes the same function
    assert_close(model.make_eval_fn(c)(p), logits_ref, f"{family} logits (fast path)")


def test_unconditional_family_imports_with_the_reference_logits_and_posterior(tmp_path):
    sd = random_state("unconditional")
    g = torch.Generator().manual_seed(3)
    B = 2
    p = points(B)
    z = torch.randn(B, 128, generator=g)
    occ = (torch.rand(B, 500, generator=g) > 0.5).float()
    with torch.no_grad():
        logits_ref = ref_simple_decoder(sd, p, z)
        mean_ref, logstd_ref = ref_latent_encoder(sd, p, occ)
    assert logits_ref.std() > 0.1

    model = import_and_load("unconditional", sd, tmp_path)
    with torch.no_grad():
        c = model.encode_inputs(None, batch_size=B)
        assert_close(model.decode(p, z, c), logits_ref, "decoder logits")
        mean, logstd = model.infer_z(p, occ, c)
        assert_close(mean, mean_ref, "posterior mean")
        assert_close(logstd, logstd_ref, "posterior log-std")
    assert_close(model.make_eval_fn(c, z)(p), logits_ref, "decoder logits (fast path)")


def test_imported_checkpoint_records_its_origin_and_needs_no_imagenet_weights(tmp_path):
    sd = random_state("img")
    model = import_and_load("img", sd, tmp_path)
    state = torch.load(tmp_path / "onet.pt", weights_only=False)
    assert state["model_config"]["encoder_kwargs"]["pretrained"] is False
    assert state["imported_from"]["family"] == "img" and state["imported_from"]["it"] == 123456
    assert len(state["imported_from"]["sha256"]) == 64
    assert model.encoder is not None


def test_a_bare_state_dict_imports_too(tmp_path):
    sd = random_state("voxels")
    torch.save(sd, tmp_path / "bare.pt")
    result = import_reference_checkpoint(tmp_path / "bare.pt", family_config("voxels", tmp_path), tmp_path / "o.pt")
    assert result.iteration is None and result.n_tensors == len(sd)


def run_cli(capsys, *args):
    code = main(["import-checkpoint", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_imports_and_generate_uses_the_checkpoint(tmp_path, capsys):
    import numpy as np

    from onet.generation import generate

    ref = save_reference(tmp_path / "onet_pcl2mesh.pt", random_state("pointcloud"))
    out = tmp_path / "imported.pt"
    code, stdout, _ = run_cli(capsys, ref, "--config", CONFIG_DIR / "pointcloud.yaml", "--out", out)
    assert code == 0 and "'pointcloud'" in stdout and out.is_file()

    scans = tmp_path / "scans"
    scans.mkdir()
    np.save(scans / "blob.npy", np.random.default_rng(0).normal(size=(400, 3)).astype(np.float32) * 0.2)
    cfg = load_config(CONFIG_DIR / "pointcloud.yaml", [
        f"out_dir={tmp_path / 'run'}", "generation.resolution_0=16", "generation.upsampling_steps=0",
        "generation.previews=false"])
    summary = generate(cfg, device="cpu", input_dir=scans, checkpoint=out, progress=False, log=lambda *a: None)
    assert summary.written == ["blob"] and not summary.failures


def test_cli_wrong_keys_exit_2_naming_them_and_the_family(tmp_path, capsys):
    sd = random_state("pointcloud")
    del sd["decoder.block3.fc_1.bias"]
    sd["decoder.block3.fc_1.biass"] = torch.zeros(256)
    sd["encoder.fc_c.weight"] = torch.zeros(512, 256)
    ref = save_reference(tmp_path / "ref.pt", sd)
    code, _, err = run_cli(capsys, ref, "--config", CONFIG_DIR / "pointcloud.yaml", "--out", tmp_path / "o.pt")
    assert code == 2
    assert "1 missing keys: decoder.block3.fc_1.bias" in err
    assert "1 unexpected keys: decoder.block3.fc_1.biass" in err
    assert "encoder.fc_c.weight is (512, 256), expected (512, 512)" in err
    assert "'pointcloud'" in err and "onet_pcl2mesh-5c0be168.pt" in err
    assert "Traceback" not in err and not (tmp_path / "o.pt").exists()


def test_cli_checkpoint_of_another_family_names_the_right_config(tmp_path, capsys):
    ref = save_reference(tmp_path / "ref.pt", random_state("voxels"))
    code, _, err = run_cli(capsys, ref, "--config", CONFIG_DIR / "img.yaml", "--out", tmp_path / "o.pt")
    assert code == 2
    assert "reference 'img' layout" in err and "encoder.conv_in.weight" in err and "encoder.features.conv1.weight" in err
    assert "looks like a 'voxels' checkpoint" in err and "configs/voxels.yaml" in err


def test_config_sizes_must_match_the_checkpoint(tmp_path):
    sd = random_state("unconditional")
    ref = save_reference(tmp_path / "ref.pt", sd)
    cfg = load_config(CONFIG_DIR / "unconditional.yaml", ["model.z_dim=64"])
    with pytest.raises(ReferenceCheckpointError, match=r"decoder.fc_z.weight is \(128, 128\), expected \(128, 64\)"):
        import_reference_checkpoint(ref, cfg, tmp_path / "o.pt")


def test_a_config_without_reference_counterpart_or_a_foreign_file_is_refused(tmp_path, capsys):
    ref = save_reference(tmp_path / "ref.pt", random_state("voxels"))
    code, _, err = run_cli(capsys, ref, "--config", CONFIG_DIR / "voxels.yaml", "model.decoder=batchnorm",
                           "--out", tmp_path / "o.pt")
    assert code == 2 and "no reference counterpart" in err
    torch.save({"weights": [1, 2, 3]}, tmp_path / "foreign.pt")
    code, _, err = run_cli(capsys, tmp_path / "foreign.pt", "--config", CONFIG_DIR / "voxels.yaml",
                           "--out", tmp_path / "o.pt")
    assert code == 2 and "holds no reference state dict" in err and "weights" in err
    code, _, err = run_cli(capsys, tmp_path / "missing.pt", "--config", CONFIG_DIR / "voxels.yaml",
                           "--out", tmp_path / "o.pt")
    assert code == 1 and "reference checkpoint not found" in err


def test_fixture_layouts_are_what_the_families_expect():
    """Every documented key maps to one onet parameter (no key left over either way)."""
    from onet.models import build_model
    from onet.models.reference import expected_layout, import_model_config

    for family, fam in FAMILIES.items():
        cfg = load_config(CONFIG_DIR / Path(fam.onet_config).name)
        model = build_model(import_model_config(cfg["model"]))
        expected = {k: v[0] for k, v in expected_layout(model, family).items()}
        assert expected == layout(family), family

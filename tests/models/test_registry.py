"""build_model, registries, parameter counts (DESIGN §5) and state_dict round trips."""

import copy

import pytest
import torch

from onet.config import CONFIG_DIR
from onet.models import (
    DECODERS,
    ENCODERS,
    LATENT_ENCODERS,
    OccupancyNetwork,
    build_model,
    count_parameters,
)


def model_cfg(**overrides):
    cfg = {
        "encoder": None, "encoder_kwargs": {}, "decoder": "cbn_resnet", "decoder_kwargs": {},
        "c_dim": 0, "z_dim": 0, "encoder_latent": None, "encoder_latent_kwargs": {},
    }
    cfg.update(overrides)
    return cfg


def test_registries_are_plain_dicts():
    assert set(ENCODERS) == {"resnet18", "pointnet_resnet", "pointnet_simple", "voxel_simple", "pointnet_triplane"}
    assert set(DECODERS) == {"cbn_resnet", "batchnorm", "cbn_noresnet", "simple", "r2n2", "psgn", "local"}
    assert set(LATENT_ENCODERS) == {"pointnet_latent"}
    assert all(isinstance(r, dict) for r in (ENCODERS, DECODERS, LATENT_ENCODERS))


@pytest.mark.parametrize("encoder, c_dim, expected", [
    ("resnet18", 256, 13.4e6),
    ("pointnet_resnet", 512, 10.4e6),
    ("voxel_simple", 256, 7.9e6),
])
def test_parameter_counts_match_design(encoder, c_dim, expected):
    model = build_model(model_cfg(encoder=encoder, c_dim=c_dim))
    n = count_parameters(model)
    print(f"{encoder} + cbn_resnet (c_dim {c_dim}): {n} parameters")
    assert abs(n - expected) / expected < 0.02


def test_exact_parameter_counts():
    # exact values for the architectures of DESIGN §5 (regression guard)
    dec = count_parameters(DECODERS["cbn_resnet"](c_dim=256))
    assert dec == 2_106_625
    assert count_parameters(ENCODERS["voxel_simple"](c_dim=256)) == 5_750_848
    assert count_parameters(ENCODERS["pointnet_resnet"](c_dim=512)) == 6_825_472


def test_build_model_is_pure_and_passes_dims():
    cfg = model_cfg(encoder="pointnet_simple", encoder_kwargs={"hidden_dim": 16}, c_dim=8, z_dim=4,
                    decoder_kwargs={"hidden_size": 16, "n_blocks": 1},
                    encoder_latent="pointnet_latent", encoder_latent_kwargs={"hidden_size": 16})
    before = copy.deepcopy(cfg)
    model = build_model(cfg)
    assert cfg == before
    assert isinstance(model, OccupancyNetwork)
    assert model.c_dim == 8 and model.z_dim == 4
    assert model.encoder.c_dim == 8 and model.encoder_latent.z_dim == 4
    assert model.encoder_latent.c_dim == 8


@pytest.mark.parametrize("key, name, kind", [
    ("encoder", "resnet50", "encoder"),
    ("decoder", "cbn", "decoder"),
    ("encoder_latent", "vae", "encoder_latent"),
])
def test_unknown_names_list_choices(key, name, kind):
    cfg = model_cfg(encoder="pointnet_simple", c_dim=8, z_dim=4)
    cfg[key] = name
    with pytest.raises(ValueError, match=f"unknown {kind} '{name}'.*valid choices") as err:
        build_model(cfg)
    registry = {"encoder": ENCODERS, "decoder": DECODERS, "encoder_latent": LATENT_ENCODERS}[kind]
    assert all(valid in str(err.value) for valid in registry)


def test_bad_kwargs_name_the_component():
    with pytest.raises(ValueError, match="decoder 'cbn_resnet'.*hidden_dim"):
        build_model(model_cfg(encoder="voxel_simple", c_dim=8, decoder_kwargs={"hidden_dim": 3}))
    with pytest.raises(ValueError, match="encoder 'voxel_simple'"):
        build_model(model_cfg(encoder="voxel_simple", c_dim=8, encoder_kwargs={"width": 3}))
    with pytest.raises(ValueError, match="model.c_dim"):
        build_model(model_cfg(encoder="voxel_simple", c_dim=8, encoder_kwargs={"c_dim": 3}))
    with pytest.raises(ValueError, match="unknown model config keys"):
        build_model(model_cfg(encoder="voxel_simple", c_dim=8, cdim=3))


def test_inconsistent_dims_are_errors():
    with pytest.raises(ValueError, match="c_dim: 0"):
        build_model(model_cfg(encoder=None, c_dim=256))
    with pytest.raises(ValueError, match="z_dim > 0"):
        build_model(model_cfg(encoder="voxel_simple", c_dim=8, encoder_latent="pointnet_latent"))
    with pytest.raises(ValueError, match="'simple'"):
        build_model(model_cfg(encoder=None, c_dim=0, decoder="cbn_resnet"))


def test_state_dict_round_trip(tmp_path):
    cfg = model_cfg(encoder="pointnet_resnet", encoder_kwargs={"hidden_dim": 16}, c_dim=8, z_dim=4,
                    decoder_kwargs={"hidden_size": 16, "n_blocks": 2}, encoder_latent="pointnet_latent")
    torch.manual_seed(0)
    a = build_model(cfg)
    a.train()
    a(torch.rand(2, 20, 3), torch.rand(2, 30, 3))  # move the running statistics
    torch.save(a.state_dict(), tmp_path / "model.pt")
    torch.manual_seed(1)
    b = build_model(cfg)
    b.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True))
    a.eval(), b.eval()
    p, x = torch.rand(2, 20, 3), torch.rand(2, 30, 3)
    with torch.no_grad():
        assert torch.equal(a(p, x, sample=False), b(p, x, sample=False))


@pytest.mark.parametrize("path", sorted((CONFIG_DIR / "baselines").glob("*.yaml")), ids=lambda p: p.stem)
def test_baseline_configs_build_a_model_for_their_inputs(path):
    from onet.config import load_config
    from onet.models import POINTS, VOXELS, output_kind

    cfg = load_config(path)
    model_cfg, data = cfg["model"], cfg["data"]
    if model_cfg["encoder"] == "resnet18":  # no download in tests: ImageNet weights are not the architecture
        model_cfg["encoder_kwargs"] = {**model_cfg["encoder_kwargs"], "pretrained": False}
    inputs = {"img": torch.rand(1, 3, data["img_size"], data["img_size"]),
              "pointcloud": torch.rand(1, data["pointcloud_n"], 3) - 0.5,
              "voxels": torch.zeros(1, 32, 32, 32)}[data["input_type"]]
    model = build_model(model_cfg).eval()
    kind = VOXELS if path.stem.startswith("r2n2") else POINTS
    assert output_kind(model_cfg) == kind and model.output_kind == kind
    with torch.no_grad():
        out = model(inputs)
    n_points = model_cfg["decoder_kwargs"].get("n_points", 1024)
    assert out.shape == ((1, 32, 32, 32) if kind == VOXELS else (1, n_points, 3))


# --------------------------------------------------------------------------- issue 12


def _save_checkpoint(tmp_path, model_cfg, input_type):
    from onet.utils.checkpoints import save_checkpoint
    model = build_model(model_cfg, pretrained=False)
    path = tmp_path / "model_best.pt"
    save_checkpoint(path, model=model.state_dict(), model_config=model_cfg,
                    config={"data": {"input_type": input_type}, "model": model_cfg})
    return path, model


def test_a_checkpoint_never_fetches_or_reads_pretrained_weights(tmp_path, monkeypatch):
    """An image model trained from ImageNet weights is rebuilt offline: the checkpoint holds every weight."""
    import onet.models.image as image
    from onet.models import load_model
    cfg = model_cfg(encoder="resnet18", encoder_kwargs={"pretrained": True}, c_dim=8,
                    decoder_kwargs={"hidden_size": 8, "n_blocks": 1})
    path, trained = _save_checkpoint(tmp_path, cfg, "img")

    def offline(*args, **kwargs):
        raise AssertionError("pretrained weights were fetched or read")

    monkeypatch.setattr(image, "load_imagenet_state_dict", offline)
    monkeypatch.setattr(image, "_torchvision_weights", offline)
    model, _ = load_model({"data": {"input_type": "img"}, "model": cfg}, path, torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), trained.state_dict().values()))


def test_checkpoint_and_config_that_disagree_name_both(tmp_path):
    from onet.models import load_model
    from onet.utils.errors import ConfigError
    cfg = model_cfg(encoder="voxel_simple", c_dim=8, decoder_kwargs={"hidden_size": 8, "n_blocks": 1})
    path, _ = _save_checkpoint(tmp_path, cfg, "voxels")
    image_cfg = {"data": {"input_type": "img"}, "model": model_cfg(encoder="resnet18", c_dim=8)}
    with pytest.raises(ConfigError, match=r"model_best.pt and the config disagree.*'voxel_simple'.*voxels.*"
                                          r"data.input_type 'img'"):
        load_model(image_cfg, path, torch.device("cpu"))


def test_constructor_refusals_are_config_errors_naming_the_component():
    from onet.utils.errors import ConfigError
    with pytest.raises(ConfigError, match="decoder 'cbn_resnet'.*hidden_size"):
        build_model(model_cfg(encoder="voxel_simple", c_dim=8, decoder_kwargs={"hidden_size": 0}))

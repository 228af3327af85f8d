"""Shared fixtures: a tiny synthetic dataset, built once per test session."""

import os

import pytest


def pytest_configure(config):
    # Under pytest-xdist each worker is one process per core: one thread each (and in the processes
    # they start, through the environment) instead of every worker running as many threads as there
    # are cores, which oversubscribed the 2-core CI machine (the suite took 454 s against 408 s).
    # Tests that need more threads set them themselves.
    if os.environ.get("PYTEST_XDIST_WORKER") and int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """2 objects per class, 3 small views, 4k points: enough for loaders, training and generation."""
    from onet.data.synthetic import build_synthetic_dataset

    root = tmp_path_factory.mktemp("synthetic")
    build_synthetic_dataset(root, n_per_class=4, classes=["table", "mug"], seed=0, n_views=3, img_size=32,
                            n_points=4000, n_surface=4000, progress=False)
    return root


@pytest.fixture
def tiny_cfg(tiny_dataset, tmp_path):
    """A small image-model config on the tiny dataset, writing into tmp_path."""
    from onet.config import CONFIG_DIR, load_config

    return load_config(CONFIG_DIR / "demo.yaml", [
        f"out_dir={tmp_path / 'run'}", f"data.path={tiny_dataset}", "data.img_size=32",
        "data.points_subsample=256", "data.points_iou_subsample=1000",
        "model.encoder_kwargs={width: 8, pretrained: false}", "model.decoder_kwargs={hidden_size: 32, n_blocks: 2}",
        "model.c_dim=16", "train.batch_size=4", "train.max_iters=4", "train.validate_every=2",
        "train.checkpoint_every=2", "train.print_every=1", "train.max_time=null",
        "generation.resolution_0=8", "generation.upsampling_steps=1", "evaluation.n_points=2000",
        # configs/demo.yaml says auto: pinned, so the suite computes the same on CPUs with and without bf16
        "train.precision=fp32", "generation.precision=fp32",
    ])


@pytest.fixture(scope="session")
def tiny_vae_cfg(tiny_dataset, tmp_path_factory):
    """configs/unconditional.yaml narrowed (8-d z, width 16) on the tiny dataset's tables, trained 2 steps."""
    from onet.config import CONFIG_DIR, load_config
    from onet.training import train

    cfg = load_config(CONFIG_DIR / "unconditional.yaml", [
        f"out_dir={tmp_path_factory.mktemp('vae') / 'run'}", f"data.path={tiny_dataset}", "data.classes=[table]",
        "device=cpu", "data.points_subsample=256", "model.z_dim=8", "model.decoder_kwargs={hidden_size: 16, n_blocks: 1}",
        "model.encoder_latent_kwargs={hidden_size: 16}", "train.batch_size=2", "train.max_iters=2",
        "train.validate_every=1000", "train.checkpoint_every=1000", "train.print_every=1",
        "generation.resolution_0=8", "generation.upsampling_steps=1", "evaluation.generative_n_points=256",
    ])
    train(cfg, progress=False, log=lambda *a: None)
    return cfg


@pytest.fixture
def tiny_latent_gan_cfg(tiny_vae_cfg, tmp_path):
    """configs/latent_gan.yaml narrowed, reading tiny_vae_cfg's run, writing into tmp_path."""
    from onet.config import CONFIG_DIR, load_config

    vae = tiny_vae_cfg
    return load_config(CONFIG_DIR / "latent_gan.yaml", [
        f"out_dir={tmp_path / 'lg'}", f"latent_gan.vae_dir={vae['out_dir']}", f"data.path={vae['data']['path']}",
        "data.classes=[table]", "device=cpu", "data.points_subsample=256", "latent_gan.noise_dim=4",
        "latent_gan.hidden_size=16", "latent_gan.n_layers=2", "train.batch_size=4", "train.max_iters=12",
        "train.print_every=2", "train.validate_every=6", "train.checkpoint_every=6",
        "generation.resolution_0=8", "generation.upsampling_steps=1", "evaluation.generative_n_points=256",
    ])

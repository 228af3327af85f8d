"""Fixtures for the reliability suite: tiny trained models, one per input type.

Models are trained once per session on the `tiny_dataset` fixture (2 iterations,
narrow layers): the tests here are about what onet does with bad input, kills
and failing disks, not about what the networks learn.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import MODEL_CONFIGS, SMALL


@pytest.fixture(scope="session")
def trained(tiny_dataset, tmp_path_factory):
    """`trained(kind)` -> the resolved config.yaml of a tiny model of that input type, trained once."""
    from onet.config import CONFIG_DIR, load_config
    from onet.training import train

    cache: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in cache:
            name, extra = MODEL_CONFIGS[kind]
            out = tmp_path_factory.mktemp(f"model_{kind}")
            cfg = load_config(CONFIG_DIR / name, [f"out_dir={out}", f"data.path={tiny_dataset}", *SMALL, *extra])
            train(cfg, progress=False, log=lambda *a: None)
            cache[kind] = out / "config.yaml"
        return cache[kind]

    return get

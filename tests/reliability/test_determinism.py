"""Same checkpoint, same inputs, same seed: byte-identical meshes on CPU.

Training's half (same seed -> same validation numbers) is
tests/training/test_trainer.py::test_same_seed_gives_the_same_validation_numbers.
"""

from __future__ import annotations

import numpy as np

from .helpers import run_cli


def _mesh_bytes(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.ply"))}


def test_generation_of_the_test_split_is_repeatable(trained, tmp_path):
    cfg = trained("img")
    for name in ("a", "b"):
        res = run_cli("generate", cfg, "--output", tmp_path / name, "--no-progress")
        assert res.code == 0, res.err
    a, b = _mesh_bytes(tmp_path / "a" / "meshes"), _mesh_bytes(tmp_path / "b" / "meshes")
    assert a and a == b


def test_point_cloud_resampling_is_seeded(trained, tmp_path):
    """A 7-point cloud is resampled to the model's 50 points: the same draw every run."""
    (tmp_path / "in").mkdir()
    np.savetxt(tmp_path / "in" / "scan.xyz", np.random.default_rng(0).normal(size=(7, 3)))
    for name in ("a", "b"):
        res = run_cli("generate", trained("pointcloud"), "--input", tmp_path / "in", "--output", tmp_path / name,
                      "--no-progress")
        assert res.code == 0, res.err
    assert (tmp_path / "a" / "inputs" / "scan.ply").read_bytes() == (tmp_path / "b" / "inputs" / "scan.ply").read_bytes()
    a, b = _mesh_bytes(tmp_path / "a" / "meshes"), _mesh_bytes(tmp_path / "b" / "meshes")
    assert a and a == b

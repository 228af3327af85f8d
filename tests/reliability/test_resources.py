"""Unwritable output and a full disk: one clear error (exit 1), and no corrupt file left behind.

The tests run as root in CI, where chmod does not stop writes; a folder that
cannot be written is made with a regular file in the way, or simulated by a
failing writer in onet.utils.io (every output goes through it).
"""

from __future__ import annotations

import errno
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import onet.utils.io as onet_io
from onet.geometry.mesh_files import read_mesh
from onet.utils.checkpoints import load_checkpoint

from .helpers import assert_one_clear_error, run_cli


def _photos(folder, n):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"photo_{i}.png")
    return folder


def _generate(cfg, folder, out):
    return run_cli("generate", cfg, "generation.batch_size=1", "--input", folder, "--output", out, "--no-progress")


def _final_files(root):
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def test_output_under_a_regular_file_is_one_error(trained, tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("a file where a folder should be")
    res = _generate(trained("img"), _photos(tmp_path / "in", 1), blocker / "meshes_here")
    assert_one_clear_error(res, 1, "Not a directory", str(blocker))
    assert blocker.read_text() == "a file where a folder should be"


def _chmod_blocks_writes(folder) -> bool:
    probe = folder / "probe"
    try:
        probe.write_text("x")
    except PermissionError:
        return True
    probe.unlink()
    return False


def test_read_only_output_folder_is_one_error(trained, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o500)
    try:
        if not _chmod_blocks_writes(out):
            pytest.skip("running as root: chmod does not block writes (see the injected EACCES test)")
        res = _generate(trained("img"), _photos(tmp_path / "in", 1), out)
        assert_one_clear_error(res, 1, "Permission denied", str(out))
        assert not list(out.iterdir())
    finally:
        out.chmod(0o700)


def _failing_open(monkeypatch, fail_on: str, error: int, *, partial: bool):
    """Make onet.utils.io's writes to temporaries of `fail_on` raise `error` (after writing half the data)."""
    real_open = open

    class Failing:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            if partial:
                self.f.write(data[: len(data) // 2])
            raise OSError(error, os.strerror(error))

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def fake_open(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return Failing(f) if "w" in mode and os.path.basename(path).startswith(f".{fail_on}.") else f

    monkeypatch.setattr(onet_io, "open", fake_open, raising=False)


def test_disk_full_mid_run_leaves_earlier_outputs_intact(trained, tmp_path, monkeypatch):
    folder, out = _photos(tmp_path / "in", 4), tmp_path / "out"
    _failing_open(monkeypatch, "photo_2.ply", errno.ENOSPC, partial=True)  # half the mesh, then the disk is full
    res = _generate(trained("img"), folder, out)
    assert_one_clear_error(res, 1, "No space left on device", str(out / "meshes" / "photo_2.ply"))
    assert sorted(p.name for p in (out / "meshes").iterdir()) == ["photo_0.ply", "photo_1.ply"]
    finished = {p: p.stat().st_mtime_ns for p in (out / "meshes").iterdir()}
    for path in finished:
        assert len(read_mesh(path)[1]) > 0
    assert not list(out.rglob(".*tmp*")), "the half-written temporary is removed"

    monkeypatch.undo()  # space freed: the same command finishes the job
    res = _generate(trained("img"), folder, out)
    assert res.code == 0 and "2 meshes already" in res.out, res.out + res.err
    assert len(list((out / "meshes").iterdir())) == 4
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())


def test_permission_denied_mid_run_names_the_file(trained, tmp_path, monkeypatch):
    """EACCES injected where root cannot get it from chmod: a preview that cannot be written."""
    folder, out = _photos(tmp_path / "in", 2), tmp_path / "out"
    real_mkstemp = onet_io.tempfile.mkstemp

    def mkstemp(*args, prefix="", dir=None, **kwargs):
        if prefix.startswith(".photo_1.png"):
            raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, prefix + "xyz.tmp"))
        return real_mkstemp(*args, prefix=prefix, dir=dir, **kwargs)

    monkeypatch.setattr(onet_io.tempfile, "mkstemp", mkstemp)
    res = _generate(trained("img"), folder, out)
    line = assert_one_clear_error(res, 1, "Permission denied", "photo_1.png")
    assert ".tmp" not in line, "the message names the output file, not the hidden temporary"
    assert [p.name for p in (out / "meshes").iterdir()] == ["photo_0.ply"]


def test_disk_full_while_checkpointing_keeps_the_last_checkpoint(trained, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(trained("img").parent, run)
    assert load_checkpoint(run / "model.pt")["it"] == 2

    def fsync(fd):  # delayed allocation: a full disk shows up at fsync
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)
    res = run_cli("train", run / "config.yaml", f"out_dir={run}", "train.max_iters=4", "--no-progress")
    line = assert_one_clear_error(res, 1, "No space left on device")
    assert "model" in line and ".pt" in line and ".tmp" not in line
    monkeypatch.undo()
    assert load_checkpoint(run / "model.pt")["it"] == 2, "the previous checkpoint is intact"
    assert not [p for p in run.iterdir() if p.name.startswith(".")]


def test_every_output_of_train_generate_eval_follows_the_umask(trained, tmp_path):
    """Issue 12, serious item 3: outputs were mode 0600 (mkstemp); they must get 0666 less the umask.

    A umask of 027 (neither the usual 022 nor mkstemp's 0600) over a whole train -> generate -> eval run.
    """
    cfg, out = trained("pointcloud"), tmp_path / "run"
    old = os.umask(0o027)
    try:
        for verb in ("train", "generate", "eval"):
            res = run_cli(verb, cfg, f"out_dir={out}", "--no-progress")
            assert res.code == 0, (verb, res.err)
    finally:
        os.umask(old)
    files = _final_files(out)
    assert {"model.pt", "config.yaml", "metrics.csv", "eval_meshes.csv", "stamp.yaml"} <= {p.name for p in files}
    assert any(p.suffix == ".ply" for p in files)
    wrong = {str(p.relative_to(out)): oct(os.stat(p).st_mode & 0o777) for p in files
             if os.stat(p).st_mode & 0o777 != 0o640}
    assert not wrong, wrong

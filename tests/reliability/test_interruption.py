"""SIGKILL during `onet generate`, then the same command again.

The other verbs have their kill tests beside their code:
tests/training/test_trainer.py::test_sigkill_mid_run_then_resume (train) and
tests/preprocess/test_pipeline.py::test_sigkill_leaves_only_complete_files_and_rerun_finishes (preprocess).
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
from PIL import Image

from onet.geometry.mesh_files import read_mesh

from .helpers import run_cli

REPO = Path(__file__).resolve().parents[2]
N_INPUTS = 8


def test_sigkill_mid_generation_then_rerun_finishes_without_redoing(trained, tmp_path):
    folder, out = tmp_path / "photos", tmp_path / "out"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(N_INPUTS):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"photo_{i}.png")
    args = ["generate", str(trained("img")), "generation.batch_size=1", "--input", str(folder), "--output", str(out),
            "--no-progress"]
    # The killed run is the real CLI, paced (a sleep before each mesh) so that the kill lands mid-run
    # however fast or loaded the machine is.
    script = textwrap.dedent(f"""
        import sys, time
        import onet.generation.run as g
        real = g._extract_batch
        def paced(*a, **k):
            time.sleep(0.3)
            return real(*a, **k)
        g._extract_batch = paced
        from onet.cli import main
        sys.exit(main({args!r}))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    meshes = out / "meshes"

    def finished():  # final names only: a write in flight is a dot-named temporary that also ends in .ply
        return sorted(p for p in meshes.glob("*.ply") if not p.name.startswith("."))

    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(finished()) < 2:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = finished()
    assert 2 <= len(done) < N_INPUTS, "the kill should land mid-run"

    # what the killed run left under final names is complete: no mesh, preview or table is torn
    for path in out.rglob("*"):
        if path.name.startswith(".") or not path.is_file():
            continue  # a temporary of the killed write; never under a final name
        if path.suffix == ".ply" and path.parent == meshes:
            vertices, faces = read_mesh(path)
            assert len(faces) > 0
        elif path.suffix == ".png":
            with Image.open(path) as img:
                img.load()
        elif path.suffix == ".csv":
            rows = list(csv.DictReader(path.open()))
            assert all(None not in row.values() for row in rows)
    finished = {p: p.stat().st_mtime_ns for p in done}

    res = run_cli(*args)  # the same command again
    assert res.code == 0, res.err
    assert f"{len(done)} meshes already in {meshes}; generating the remaining {N_INPUTS - len(done)}" in res.out
    assert sorted(p.name for p in meshes.glob("*.ply")) == [f"photo_{i}.ply" for i in range(N_INPUTS)]
    for path in meshes.glob("*.ply"):
        assert len(read_mesh(path)[1]) > 0
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items()), "finished meshes must not be redone"
    with open(out / "time_generation.csv") as f:
        assert sorted(row["name"] for row in csv.DictReader(f)) == [f"photo_{i}" for i in range(N_INPUTS)]
    assert not list(out.rglob(".*tmp*")), "temporaries of the killed run are cleaned up"

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import trimesh

import onet.preprocess.pipeline as pipeline
from onet.data.formats import load_cameras_npz, load_pointcloud_npz, load_points_npz, read_binvox, read_metadata, read_split
from onet.preprocess.pipeline import PreprocessOptions, assign_splits, preprocess_dataset, read_report

SMALL = dict(n_points=2000, n_surface=500, voxel_resolution=16, n_views=2, img_size=24, watertight_resolution=32)
OPTS = PreprocessOptions(**SMALL)
REPO = Path(__file__).resolve().parents[2]


def _export(mesh, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    mesh.export(path)


def _tree(root: Path, broken: bool = True) -> Path:
    """A ShapeNet-style tree: v1 and v2 layouts, plus (optionally) broken files."""
    _export(trimesh.creation.box(extents=(1, 2, 3)), root / "03001627" / "aaa" / "model.obj")
    _export(trimesh.creation.icosphere(subdivisions=2), root / "03001627" / "bbb" / "model.obj")
    _export(trimesh.creation.cylinder(0.3, 1.0), root / "02691156" / "ccc" / "models" / "model_normalized.obj")
    if broken:
        d = root / "02691156"
        (d / "garbage" / "models").mkdir(parents=True)
        (d / "garbage" / "models" / "model_normalized.obj").write_bytes(bytes(range(256)) * 8)
        (d / "empty").mkdir()
        (d / "empty" / "model.obj").write_text("")
        (d / "nofaces").mkdir()
        (d / "nofaces" / "model.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
        (d / "allnan").mkdir()
        (d / "allnan" / "model.obj").write_text("v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
        # some NaN vertices among good ones: cleaned and processed
        box = trimesh.creation.box()
        lines = [f"v {x} {y} {z}" for x, y, z in box.vertices] + ["v nan nan nan"]
        lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in box.faces] + ["f 1 2 9"]
        (d / "somenan").mkdir()
        (d / "somenan" / "model.obj").write_text("\n".join(lines) + "\n")
    return root


def test_tree_is_processed_and_failures_reported(tmp_path):
    src, out = _tree(tmp_path / "in"), tmp_path / "out"
    summary = preprocess_dataset(src, out, options=OPTS, progress=False)
    assert (summary.n_ok, summary.n_failed, summary.n_skipped) == (4, 4, 0)
    failed = {item.model_id: reason for item, reason in summary.failures}
    assert set(failed) == {"garbage", "empty", "nofaces", "allnan"}
    assert "empty" in failed["empty"] and "no faces" in failed["nofaces"] and "NaN" in failed["allnan"]
    records = read_report(summary.report_path)
    assert {r["model_id"] for r in records if r["status"] == "failed"} == set(failed)
    ok = [r for r in records if r["status"] in ("ok", "warning")]
    assert len(ok) == 4 and all(set(pipeline.STAGES) <= set(r["timings"]) for r in ok)
    # NaN vertices dropped from an otherwise good mesh: finished, but reported as a warning, not "ok"
    warned = {r["model_id"]: r["reason"] for r in records if r["status"] == "warning"}
    assert warned == {"somenan": "dropped 1 of 13 faces used NaN/inf vertices"}
    assert [(item.model_id, reason) for item, reason in summary.warnings if item] == list(warned.items())

    obj = out / "03001627" / "aaa"
    pts = load_points_npz(obj / "points.npz")
    assert pts["points"].shape == (2000, 3) and np.abs(pts["points"]).max() <= 0.55
    assert pts["scale"] == pytest.approx(3.0, rel=1e-3)  # longest edge of the 1x2x3 box
    inside = np.all(np.abs(pts["points"] * 3.0) < np.array([0.5, 1.0, 1.5]) - 0.15, axis=1)
    outside = np.any(np.abs(pts["points"] * 3.0) > np.array([0.5, 1.0, 1.5]) + 0.15, axis=1)
    assert pts["occupancies"][inside].all() and not pts["occupancies"][outside].any()
    assert load_pointcloud_npz(obj / "pointcloud.npz")["points"].shape == (500, 3)
    assert read_binvox(obj / "model.binvox").shape == (16, 16, 16)
    assert len(load_cameras_npz(obj / "img_choy2016" / "cameras.npz")) == 2
    mesh = trimesh.load(obj / "mesh.ply")
    assert mesh.is_watertight
    assert (out / "02691156" / "somenan" / "mesh.ply").is_file()

    meta = read_metadata(out / "metadata.yaml")
    assert set(meta) == {"03001627", "02691156"} and meta["03001627"]["name"] == "chair"
    listed = sorted(m for s in ("train", "val", "test") for m in read_split(out / "03001627" / f"{s}.lst"))
    assert listed == ["aaa", "bbb"]
    listed = sorted(m for s in ("train", "val", "test") for m in read_split(out / "02691156" / f"{s}.lst"))
    assert listed == ["ccc", "somenan"]  # failed objects are not listed
    assert not list(out.rglob(".*tmp*"))


def test_resume_redoes_only_incomplete_objects(tmp_path):
    src, out = _tree(tmp_path / "in", broken=False), tmp_path / "out"
    assert preprocess_dataset(src, out, options=OPTS, progress=False).n_ok == 3
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.suffix != ".jsonl"}
    victim = out / "03001627" / "bbb" / "pointcloud.npz"
    victim.unlink()
    summary = preprocess_dataset(src, out, options=OPTS, progress=False)
    assert (summary.n_ok, summary.n_skipped, summary.n_failed) == (1, 2, 0)
    assert victim.is_file()
    untouched = [p for p in before if "bbb" not in p.parts and p.suffix not in (".lst", ".yaml")]
    assert all(p.stat().st_mtime_ns == before[p] for p in untouched)


def test_failure_mid_object_then_rerun_finishes(tmp_path, monkeypatch):
    src, out = _tree(tmp_path / "in", broken=False), tmp_path / "out"
    import onet.geometry.render as render

    real = render.render_views
    monkeypatch.setattr(render, "render_views", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    summary = preprocess_dataset(src, out, options=OPTS, progress=False)
    assert summary.n_ok == 0 and summary.n_failed == 3
    assert all("boom" in r for _, r in summary.failures)
    assert (out / "03001627" / "aaa" / "points.npz").is_file()  # written before the failure
    assert not (out / "metadata.yaml").exists()  # nothing complete, nothing listed
    monkeypatch.setattr(render, "render_views", real)
    summary = preprocess_dataset(src, out, options=OPTS, progress=False)
    assert (summary.n_ok, summary.n_skipped) == (3, 0)


def test_sigkill_leaves_only_complete_files_and_rerun_finishes(tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(12):
        _export(trimesh.creation.icosphere(subdivisions=2).apply_scale(1 + i / 10), src / "things" / f"s{i:02d}.obj")
    script = textwrap.dedent(
        f"""
        from onet.preprocess.pipeline import PreprocessOptions, preprocess_dataset
        preprocess_dataset({str(src)!r}, {str(out)!r}, options=PreprocessOptions(**{SMALL!r}), progress=False)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env)
    deadline = time.time() + 60
    while time.time() < deadline and len(list(out.glob("things/*/mesh.ply"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(out.glob("things/*/mesh.ply")))
    assert 2 <= done < 12, "the kill should land mid-run"
    for p in out.rglob("*"):  # every final file is loadable
        if p.name.startswith("."):
            continue  # a temporary: never mistaken for output
        if p.name.startswith("points"):
            load_points_npz(p)
        elif p.name == "pointcloud.npz":
            load_pointcloud_npz(p)
        elif p.suffix == ".binvox":
            read_binvox(p)
        elif p.name == "cameras.npz":
            load_cameras_npz(p)
    summary = preprocess_dataset(src, out, options=OPTS, progress=False)
    assert summary.n_failed == 0 and summary.n_ok + summary.n_skipped == 12
    assert summary.n_skipped >= done
    assert not list(out.rglob(".*tmp*"))
    assert len(read_split(out / "things" / "train.lst")) + len(read_split(out / "things" / "test.lst")) + len(
        read_split(out / "things" / "val.lst")
    ) == 12



@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the workers through /proc")
@pytest.mark.parametrize("stop", ["ctrl-c twice", "sigterm"])
def test_stopping_a_run_with_workers_exits_at_once_and_rerun_finishes(tmp_path, stop):
    # a second Ctrl-C during the pool's shutdown left workers waiting for work and the process
    # hanging at exit; SIGTERM to the main process (`kill`, a scheduler) left the workers running
    # for good; now the workers are stopped at once
    src, out = tmp_path / "in", tmp_path / "out"
    for i in range(12):
        _export(trimesh.creation.icosphere(subdivisions=2).apply_scale(1 + i / 10), src / "things" / f"s{i:02d}.obj")
    flags = ["--n-points", "2000", "--n-surface", "500", "--voxel-resolution", "16", "--n-views", "2",
             "--img-size", "24", "--watertight-resolution", "32", "--no-progress"]
    script = textwrap.dedent(f"""
        import signal, sys
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, whatever started us
        from onet.cli import main
        sys.exit(main(["preprocess", {str(src)!r}, {str(out)!r}, "--workers", "2", *{flags!r}]))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.glob("things/*/mesh.ply")):
        time.sleep(0.05)
    workers = [int(pid) for task in Path(f"/proc/{proc.pid}/task").iterdir()
               for pid in (task / "children").read_text().split()]
    assert workers, "the pool's workers run by now"
    if stop == "sigterm":
        proc.send_signal(signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"onet preprocess hung after {stop}")
    if stop == "sigterm":
        assert "terminated (SIGTERM)" in err and proc.returncode == 143
    else:  # the second Ctrl-C may land while the first is being reported: then Python's own exit
        assert proc.returncode in (130, -signal.SIGINT)
    def alive(pid):  # a zombie of the finished parent, left for init to reap, counts as gone
        status = Path(f"/proc/{pid}/status")
        try:
            return "State:\tZ" not in status.read_text()
        except OSError:
            return False

    deadline = time.time() + 10  # the workers, and multiprocessing's resource tracker, which exits on its own
    while time.time() < deadline and any(alive(pid) for pid in workers):
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers)
    done = len(list(out.glob("things/*/mesh.ply")))
    summary = preprocess_dataset(src, out, options=OPTS, progress=False)
    assert summary.n_failed == 0 and summary.n_ok + summary.n_skipped == 12 and summary.n_skipped >= done
    assert not list(out.rglob(".*tmp*"))

def test_shards_and_workers_cover_everything_once(tmp_path):
    src = _tree(tmp_path / "in", broken=False)
    _export(trimesh.creation.capsule(), src / "02691156" / "ddd" / "model.obj")
    out = tmp_path / "out"
    s0 = preprocess_dataset(src, out, options=OPTS, shard=(0, 2), workers=2, progress=False)
    s1 = preprocess_dataset(src, out, options=OPTS, shard=(1, 2), progress=False)
    assert s0.n_ok == 2 and s1.n_ok == 2
    assert s0.report_path != s1.report_path
    listed = {m for s in ("train", "val", "test") for m in read_split(out / "02691156" / f"{s}.lst")}
    assert listed == {"ccc", "ddd"}
    again = preprocess_dataset(src, out, options=OPTS, progress=False)
    assert again.n_skipped == 4


def test_splits_are_seeded_and_given_lists_are_used(tmp_path):
    from onet.preprocess.discover import InputItem

    items = [InputItem("c", f"m{i:02d}", Path(f"m{i}.obj")) for i in range(20)]
    a = assign_splits(items, PreprocessOptions(seed=1))
    assert a == assign_splits(list(reversed(items)), PreprocessOptions(seed=1))
    assert [len(a["c"][s]) for s in ("train", "val", "test")] == [14, 2, 4]
    assert a != assign_splits(items, PreprocessOptions(seed=2))
    given = tmp_path / "lists"
    given.mkdir()
    (given / "train.lst").write_text("m00\nm01\nnot_there\n")
    (given / "val.lst").write_text("m02\n")
    (given / "test.lst").write_text("")
    b = assign_splits(items, PreprocessOptions(splits_from=str(given)))
    assert b["c"] == {"train": ["m00", "m01"], "val": ["m02"], "test": []}


def test_options_are_checked():
    with pytest.raises(ValueError, match="split_fractions"):
        PreprocessOptions(split_fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="watertight_resolution"):
        PreprocessOptions(watertight_resolution=31)
    with pytest.raises(ValueError, match="unknown"):
        pipeline.options_from_dict({"n_point": 3})
    assert "points_near_surface.npz" in PreprocessOptions(n_near_surface=10).output_files()
    assert "points_near_surface.npz" not in PreprocessOptions().output_files()
    assert PreprocessOptions(near_surface_sigma=0.02).near_surface_sigma == (0.02,)
    for bad in ((), (0.01, 0.02, 0.05), (0.0,), (-0.01,)):
        with pytest.raises(ValueError, match="near_surface_sigma"):
            PreprocessOptions(near_surface_sigma=bad)
    with pytest.raises(ValueError, match="n_near_surface"):
        PreprocessOptions(n_near_surface=-1)


def test_near_surface_points(tmp_path):
    src = tmp_path / "in"
    _export(trimesh.creation.icosphere(subdivisions=2), src / "x" / "ball.off")
    out = tmp_path / "out"
    opts = PreprocessOptions(**{**SMALL, "n_near_surface": 1000, "n_views": 1, "save_mesh": False})
    assert preprocess_dataset(src, out, options=opts, progress=False).n_ok == 1
    near = load_points_npz(out / "x" / "ball" / "points_near_surface.npz")
    r = np.linalg.norm(near["points"], axis=1)
    assert np.abs(r - 0.5).max() < 0.08  # within a few sigma of the (normalised) sphere
    assert 0.2 < near["occupancies"].mean() < 0.8
    assert not (out / "x" / "ball" / "mesh.ply").exists()
    # the published uniform file is untouched by the option: same bytes as without it
    plain = tmp_path / "plain"
    preprocess_dataset(src, plain, options=PreprocessOptions(**{**SMALL, "n_views": 1, "save_mesh": False}),
                       progress=False)
    assert (plain / "x" / "ball" / "points.npz").read_bytes() == (out / "x" / "ball" / "points.npz").read_bytes()
    assert not (plain / "x" / "ball" / "points_near_surface.npz").exists()


def _winding_number(v: np.ndarray, f: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Generalised winding number of points p (N, 3) w.r.t. a closed mesh (solid angles, Van Oosterom-Strackee).

    An inside test independent of onet's ray parity: ~1 inside, ~0 outside.
    """
    out = np.zeros(len(p))
    for chunk in np.array_split(np.arange(len(p)), max(1, len(p) // 256)):
        a, b, c = (v[f[:, k]][None] - p[chunk, None] for k in range(3))  # (n, F, 3)
        la, lb, lc = (np.linalg.norm(x, axis=2) for x in (a, b, c))
        det = np.einsum("nfi,nfi->nf", a, np.cross(b, c))
        den = (la * lb * lc + np.einsum("nfi,nfi->nf", a, b) * lc + np.einsum("nfi,nfi->nf", b, c) * la
               + np.einsum("nfi,nfi->nf", c, a) * lb)
        out[chunk] = 2 * np.arctan2(det, den).sum(axis=1) / (4 * np.pi)
    return out


@pytest.mark.parametrize("shape", ["torus", "thin_plate"])
def test_near_surface_occupancies_agree_with_the_watertight_mesh(tmp_path, shape):
    mesh = {"torus": lambda: trimesh.creation.torus(1.0, 0.3),
            "thin_plate": lambda: trimesh.creation.box(extents=(1.0, 0.7, 0.03))}[shape]()
    _export(mesh, tmp_path / "in" / "c" / f"{shape}.obj")
    opts = PreprocessOptions(**{**SMALL, "n_near_surface": 3000, "near_surface_sigma": (0.01, 0.05), "n_views": 1})
    assert preprocess_dataset(tmp_path / "in", tmp_path / "out", options=opts, progress=False).n_ok == 1
    folder = tmp_path / "out" / "c" / shape
    near = load_points_npz(folder / "points_near_surface.npz")
    wt = trimesh.load(folder / "mesh.ply", process=False)
    occ_ref = _winding_number(np.asarray(wt.vertices, dtype=np.float64), np.asarray(wt.faces),
                              near["points"].astype(np.float64)) > 0.5
    agreement = (near["occupancies"] == occ_ref).mean()
    assert agreement >= 0.995, agreement
    # two scales: even points from the fine one, odd ones from the coarse one
    dist = np.abs(trimesh.proximity.signed_distance(wt, near["points"][:1000]))
    assert np.median(dist[0::2]) < 0.012 < np.median(dist[1::2])
    assert 0.05 < near["occupancies"].mean() < 0.95


def test_textured_mesh_renders_its_texture_and_depth_lands_on_the_surface(tmp_path):
    from PIL import Image
    from scipy.ndimage import binary_erosion

    from onet.data.formats import load_depth_npz
    from onet.geometry.render import depth_to_points
    from textured import cube_color, write_textured_cube_obj

    write_textured_cube_obj(tmp_path / "in" / "03001627" / "tex")  # ShapeNet v2 layout, texture in ../images
    options = PreprocessOptions(**{**SMALL, "n_views": 4, "img_size": 96, "voxel_resolution": 32}, depth=True)
    out = tmp_path / "out"
    assert preprocess_dataset(tmp_path / "in", out, options=options, progress=False).n_ok == 1
    folder = out / "03001627" / "tex"
    cameras = load_cameras_npz(folder / "img_choy2016" / "cameras.npz")
    depths = load_depth_npz(folder / "img_choy2016" / "depth.npz")
    watertight = trimesh.load(folder / "mesh.ply", process=False)
    errors = []
    for i, ((K, RT), depth) in enumerate(zip(cameras, depths)):
        image = np.asarray(Image.open(folder / "img_choy2016" / f"{i:03d}.jpg")).astype(float)
        assert depth.shape == (96, 96)
        points = depth_to_points(depth, K, RT)
        # on the normalised input cube (box [-0.5, 0.5]^3) up to float32 cameras ...
        assert np.abs(np.abs(points).max(axis=1) - 0.5).max() < 1e-4
        # ... and within one voxel (1/32) of the watertight reference mesh
        assert trimesh.proximity.closest_point(watertight, points)[1].max() < 1 / 32
        # the texture colours show, measured at pixels well inside a quadrant and the silhouette
        # (JPEG blurs colour over a few pixels); the hue is judged from the brightest channel
        inside = binary_erosion(depth > 0, iterations=3)
        rows, cols = np.nonzero(depth > 0)
        for p, r, c in zip(points, rows, cols):
            in_face = np.sort(np.abs(p))[:2]  # the two in-face coordinates
            if not (inside[r, c] and 0.12 < in_face.min() and in_face.max() < 0.4) or image[r, c].max() < 60:
                continue
            errors.append(np.abs(image[r, c] / image[r, c].max() - cube_color(p)).max())
    errors = np.array(errors)
    assert len(errors) > 500  # also fails if Kd (0.2) darkened the texture: pixels under 60 are not judged
    assert np.median(errors) < 0.05 and np.quantile(errors, 0.99) < 0.2, (np.median(errors), errors.max())


@pytest.mark.parametrize("axis", ["z", "-x"])
def test_up_axis_turns_the_given_axis_to_y(tmp_path, axis):
    from onet.geometry.normalize import up_axis_rotation

    R = up_axis_rotation(axis)
    assert np.allclose(R @ R.T, np.eye(3)) and np.isclose(np.linalg.det(R), 1)  # a rotation, never a mirror
    up = {"z": [0, 0, 1], "-x": [-1, 0, 0]}[axis]
    np.testing.assert_allclose(R @ up, [0, 1, 0])
    # a post standing along that axis comes out standing along y
    extents = np.where(np.abs(up) > 0, 3.0, 1.0)
    _export(trimesh.creation.box(extents=extents), tmp_path / "in" / "posts" / "post.obj")
    summary = preprocess_dataset(tmp_path / "in", tmp_path / "out", options=PreprocessOptions(**SMALL, up_axis=axis),
                                 progress=False)
    assert summary.n_ok == 1
    mesh = trimesh.load(tmp_path / "out" / "posts" / "post" / "mesh.ply", process=False)
    assert np.argmax(mesh.extents) == 1
    with pytest.raises(ValueError, match="up_axis must be one of"):
        PreprocessOptions(up_axis="up")

"""Users' own inputs for `onet generate --input`: good variants give meshes, bad files are named and skipped.

One batch per model type (image, point cloud, voxels) runs through the command
line; each case below is its own test reading that batch's outcome.
"""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onet.data.formats import write_binvox
from onet.geometry.mesh_files import read_mesh

from .helpers import assert_one_clear_error, run_cli

RNG = np.random.default_rng(0)


def _jpeg_bytes(shape=(48, 48, 3)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(RNG.integers(0, 255, shape, dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _image_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _rgb(h=40, w=56):
    return Image.fromarray(RNG.integers(0, 255, (h, w, 3), dtype=np.uint8))


GOOD_IMAGES = {
    "rgb.jpg": lambda: _jpeg_bytes(),
    "gray.png": lambda: _image_bytes(Image.fromarray(RNG.integers(0, 255, (40, 40), dtype=np.uint8), mode="L")),
    "rgba.png": lambda: _image_bytes(Image.fromarray(RNG.integers(0, 255, (40, 40, 4), dtype=np.uint8), mode="RGBA")),
    "sixteen_bit.png": lambda: _image_bytes(Image.fromarray(RNG.integers(0, 65535, (40, 40), dtype=np.uint16))),
    "palette.png": lambda: _image_bytes(_rgb().convert("P")),
    "cmyk.jpg": lambda: _image_bytes(_rgb().convert("CMYK"), fmt="JPEG"),
    "tiny.png": lambda: _image_bytes(_rgb(1, 1)),
}
BAD_IMAGES = {  # name -> (bytes, what the message must say)
    "truncated.jpg": (lambda: _jpeg_bytes((96, 96, 3))[:600], "truncated"),
    "half_written.png": (lambda: _image_bytes(_rgb(96, 96))[:500], "truncated"),
    "zero_size.png": (lambda: b"", "file is empty"),
    "not_an_image.jpg": (lambda: b"Hello, I am a text file.\n" * 10, "cannot read image"),
    'scan 3, "final".png': (lambda: b"\x89PNG\r\n\x1a\n" + bytes(20), "cannot read image"),  # csv-hostile name
}


def _points(n):
    return RNG.normal(size=(n, 3))


def _ascii_ply(points):
    header = f"ply\nformat ascii 1.0\nelement vertex {len(points)}\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    return (header + "".join(f"{x} {y} {z}\n" for x, y, z in points)).encode()


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _with_nan_rows(points):
    points = points.copy()
    points[::5] = np.nan
    points[1] = np.inf
    return points


GOOD_POINTS = {
    "full.ply": lambda: _ascii_ply(_points(400)),
    "nan_rows.npy": lambda: _npy(_with_nan_rows(_points(400))),
    "few_points.xyz": lambda: "".join(f"{x} {y} {z}\n" for x, y, z in _points(7)).encode(),  # < pointcloud_n
    "with_normals.npz": lambda: _npz(points=_points(300), normals=_points(300)),
    "six_columns.txt": lambda: "".join(" ".join(map(str, r)) + "\n" for r in RNG.normal(size=(80, 6))).encode(),
}
BAD_POINTS = {
    "single_point.xyz": (lambda: b"0.1 0.2 0.3\n", "1 usable point"),
    "two_columns.npy": (lambda: _npy(RNG.normal(size=(100, 2))), "must be an (N, 3) array, got shape (100, 2)"),
    "three_dims.npy": (lambda: _npy(RNG.normal(size=(10, 3, 3))), "must be an (N, 3) array, got shape (10, 3, 3)"),
    "transposed.npy": (lambda: _npy(RNG.normal(size=(3, 400))), "ambiguous, it looks like 400 points stored as columns"),
    "all_nan.npy": (lambda: _npy(np.full((50, 3), np.nan)), "after dropping 50 NaN/inf points"),
    "coincident.npy": (lambda: _npy(np.ones((50, 3))), "all points coincide"),
    "garbage.ply": (lambda: bytes(range(256)) * 4, "cannot read point cloud"),
    "empty.xyz": (lambda: b"", "file is empty"),
}


def _binvox(voxels) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        write_binvox(Path(d) / "v.binvox", voxels)
        return (Path(d) / "v.binvox").read_bytes()


def _ball(res):
    c = (np.arange(res) + 0.5) / res - 0.5
    x, y, z = np.meshgrid(c, c, c, indexing="ij")
    return x**2 + y**2 + z**2 < 0.3**2


GOOD_VOXELS = {
    "ball.binvox": lambda: _binvox(_ball(32)),
    "ball_float.npy": lambda: _npy(_ball(32).astype(np.float32)),
    "ball64.binvox": lambda: _binvox(_ball(64)),  # a finer grid of the same box: max-pooled to 32^3
}
BAD_VOXELS = {
    "ball48.binvox": (lambda: _binvox(_ball(48)), "voxel grid must be 32^3 (or a multiple"),
    "small.npy": (lambda: _npy(RNG.random((10, 10, 10))), "got shape (10, 10, 10)"),
    "flat.npy": (lambda: _npy(RNG.random((32, 32))), "voxel array must have shape (N, M, K), got (32, 32)"),
    "nan.npy": (lambda: _npy(np.full((32, 32, 32), np.nan)), "NaN/inf"),
    "truncated.binvox": (lambda: _binvox(_ball(32))[:-8], "binvox data holds"),
    "empty.binvox": (lambda: b"", "file is empty"),
}

KINDS = {
    "img": (GOOD_IMAGES, BAD_IMAGES),
    "pointcloud": (GOOD_POINTS, BAD_POINTS),
    "voxels": (GOOD_VOXELS, BAD_VOXELS),
}


class Batch:
    """One `onet generate --input` run over a folder holding every good and bad case of a kind."""

    def __init__(self, kind, cfg_path, root):
        self.kind = kind
        good, bad = KINDS[kind]
        self.folder, self.out = root / "inputs", root / "out"
        self.folder.mkdir()
        for name, make in good.items():
            (self.folder / name).write_bytes(make())
        for name, (make, _) in bad.items():
            (self.folder / name).write_bytes(make())
        self.res = run_cli("generate", cfg_path, "--input", self.folder, "--output", self.out, "--no-progress")
        fail_csv = self.out / "failures.csv"
        self.failures = {r["name"]: r["reason"] for r in csv.DictReader(fail_csv.open())} if fail_csv.is_file() else {}


@pytest.fixture(scope="module")
def batches(trained, tmp_path_factory):
    """`batches(kind)` -> that kind's Batch, run once per module."""
    cache: dict[str, Batch] = {}

    def get(kind: str) -> Batch:
        if kind not in cache:
            cache[kind] = Batch(kind, trained(kind), tmp_path_factory.mktemp(f"inputs_{kind}"))
        return cache[kind]

    return get


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_batch_finishes_and_counts(kind, batches):
    batch = batches(kind)
    good, bad = KINDS[kind]
    assert batch.res.code == 1, batch.res.err  # finished, with failed items: exit 1 (onet.utils.batch)
    assert "Traceback" not in batch.res.out + batch.res.err and not batch.res.errors()
    assert f"wrote {len(good)} meshes" in batch.res.out and f"{len(bad)} inputs failed" in batch.res.out
    assert sorted(batch.failures) == sorted(name.rsplit(".", 1)[0] for name in bad)
    assert not list(batch.out.rglob(".*tmp*"))


def _cases(which):
    return [(kind, name) for kind, pair in KINDS.items() for name in sorted(pair[which])]


@pytest.mark.parametrize("kind,name", _cases(0))
def test_good_input_gives_a_mesh(kind, name, batches):
    batch = batches(kind)
    stem = name.rsplit(".", 1)[0]
    vertices, faces = read_mesh(batch.out / "meshes" / f"{stem}.ply")
    assert len(faces) > 0 and np.isfinite(vertices).all()
    assert stem not in batch.failures


@pytest.mark.parametrize("kind,name", _cases(1))
def test_bad_input_is_named_with_its_problem(kind, name, batches):
    batch = batches(kind)
    stem, problem = name.rsplit(".", 1)[0], KINDS[kind][1][name][1]
    lines = [line for line in batch.res.out.splitlines() if line.startswith(f"skipped {stem}:")]
    assert len(lines) == 1, batch.res.out
    assert str(batch.folder / name) in lines[0] and problem.lower() in lines[0].lower(), lines[0]
    assert problem.lower() in batch.failures[stem].lower()
    assert not (batch.out / "meshes" / f"{stem}.ply").exists()


def test_few_points_are_resampled_to_what_the_model_expects(trained, tmp_path):
    """7 points in, pointcloud_n (50) points seen by the model; the NaN rows never reach it."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "few.xyz").write_bytes(GOOD_POINTS["few_points.xyz"]())
    (folder / "nan_rows.npy").write_bytes(GOOD_POINTS["nan_rows.npy"]())
    res = run_cli("generate", trained("pointcloud"), "--input", folder, "--output", tmp_path / "out", "--no-progress")
    assert res.code == 0, res.err
    for stem in ("few", "nan_rows"):
        text = (tmp_path / "out" / "inputs" / f"{stem}.ply").read_text()
        assert "element vertex 50\n" in text and "nan" not in text.lower() and "inf" not in text.lower()


def test_all_inputs_bad_is_a_failed_run(trained, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("zero_size.png", "not_an_image.jpg"):
        (folder / name).write_bytes(BAD_IMAGES[name][0]())
    res = run_cli("generate", trained("img"), "--input", folder, "--output", tmp_path / "out", "--no-progress")
    assert_one_clear_error(res, 1, "none of the 2 inputs could be used", "failures.csv")
    assert "skipped zero_size:" in res.out and "skipped not_an_image:" in res.out


def test_inputs_differing_only_by_suffix_both_get_meshes(trained, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "chair.jpg").write_bytes(_jpeg_bytes())
    (folder / "chair.png").write_bytes(_image_bytes(_rgb()))
    res = run_cli("generate", trained("img"), "--input", folder, "--output", tmp_path / "out", "--no-progress")
    assert res.code == 0, res.err
    assert sorted(p.name for p in (tmp_path / "out" / "meshes").iterdir()) == ["chair_jpg.ply", "chair_png.ply"]


def test_missing_or_empty_input_folder_is_one_error(trained, tmp_path):
    res = run_cli("generate", trained("img"), "--input", tmp_path / "nowhere", "--output", tmp_path / "out")
    assert_one_clear_error(res, 1, "input folder not found", "nowhere")
    (tmp_path / "empty").mkdir()
    res = run_cli("generate", trained("img"), "--input", tmp_path / "empty", "--output", tmp_path / "out")
    assert_one_clear_error(res, 1, "no input files of type 'img'", "empty")


def test_files_of_other_types_are_left_out_with_a_notice(trained, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "chair.png").write_bytes(_image_bytes(_rgb()))
    (folder / "notes.txt").write_text("not an image")
    (folder / "scan.ply").write_text("ply\n")
    res = run_cli("generate", trained("img"), "--input", folder, "--output", tmp_path / "out", "--no-progress")
    assert res.code == 0, res.err
    assert [p.name for p in (tmp_path / "out" / "meshes").iterdir()] == ["chair.ply"]
    notice = [line for line in (res.out + res.err).splitlines() if line.startswith("left out")]
    assert len(notice) == 1 and "1 .txt" in notice[0] and "1 .ply" in notice[0] and "jpg/jpeg/png" in notice[0]
    # only files the model cannot read: one error that says what the folder holds
    (folder / "chair.png").unlink()
    res = run_cli("generate", trained("img"), "--input", folder, "--output", tmp_path / "out2")
    assert_one_clear_error(res, 1, "no input files of type 'img' (jpg/jpeg/png)", "1 .txt", "1 .ply")

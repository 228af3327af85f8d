"""`onet report`: what the page holds, what it refers to, what happens when pieces are missing."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from onet.cli import main
from onet.report import write_report
from onet.utils.errors import UsageError

from conftest import OBJECTS


def images_of(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html)


def test_report_has_every_section_and_every_image_exists(run_folder):
    summary = write_report(run_folder, progress=False)
    assert summary.path == run_folder / "report" / "index.html" and summary.notes == []
    html = summary.path.read_text()
    for heading in ("Per-class results", "Gallery", "Training curves", "Threshold sweep", "Generation timings",
                    "Configuration"):
        assert f"<h2>{heading}</h2>" in html
    srcs = images_of(html)
    assert len(srcs) == summary.n_images == 3 * len(OBJECTS) + 1  # input, prediction, reference + sweep
    for src in srcs:
        assert (summary.path.parent / src).is_file(), src
        assert not src.startswith(("/", "http", "file:"))  # relative: the folder can move
    # the gallery: worst IoU first, the IoU shown per object
    order = [float(v) for v in re.findall(r'<div class="item" data-iou="([^"]+)"', html)]
    assert order == sorted(iou for _, _, iou in OBJECTS)
    assert "IoU <b>0.120</b>" in html
    # every reference kind rendered: meshes (mesh.ply) and surface points (pointcloud.npz)
    assert "reference mesh" in html and "reference (surface points)" in html
    # curves from metrics.csv (training loss, validation IoU, validation loss) as inline SVG
    assert html.count("<svg") == 3 and "Best validation IoU <b>0.5200</b> at iteration 40" in html
    # the class table: sortable body rows, means in the footer (not sorted with the classes)
    body = html.split('<table id="classes"')[1].split("</table>")[0]
    assert body.count("<tr>") == 1 + 3 + 2 and "<tfoot>" in body and "mean (classes)" in body.split("<tfoot>")[1]
    assert 'data-value="0.25"' in body  # Chamfer-L1 0.025 shown x10 and sorted by that value
    assert "Best tau <b>0.25</b>" in html and "0.560" in html  # sweep summary, mean total seconds
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched


def test_gallery_size_and_rerun_reuses_thumbnails(run_folder):
    summary = write_report(run_folder, max_objects=2, progress=False)
    html = summary.path.read_text()
    assert summary.n_gallery == 2 and "the 2 worst of 4" in html
    thumb = run_folder / "report" / "thumbs" / "table" / "t1_pred.png"
    before = thumb.stat().st_mtime_ns
    write_report(run_folder, max_objects=2, progress=False)
    assert thumb.stat().st_mtime_ns == before  # unchanged source: not rendered again
    mesh = run_folder / "generation" / "meshes" / "table" / "t1.ply"
    os.utime(mesh, ns=(before + 10**9, before + 10**9))
    write_report(run_folder, max_objects=2, progress=False)
    assert thumb.stat().st_mtime_ns > before  # a newer mesh is rendered again


def test_missing_pieces_become_notes(run_folder):
    shutil.rmtree(run_folder / "eval")
    (run_folder / "generation" / "time_generation.csv").unlink()
    summary = write_report(run_folder, progress=False)
    html = summary.path.read_text()
    assert summary.n_gallery == 0 and summary.n_images == 0
    assert "run <code>onet eval</code>" in html and "onet eval CONFIG --sweep" in html
    assert any("eval_classes.csv" in n for n in summary.notes) and any("time_generation" in n for n in summary.notes)
    assert html.count("<svg") == 3  # the curves are still there


def test_missing_dataset_still_shows_predictions(run_folder, tmp_path):
    shutil.rmtree(tmp_path / "data")
    summary = write_report(run_folder, progress=False)
    html = summary.path.read_text()
    assert summary.n_images == 2 * 3 + 1 + 1  # 3 input copies + 4 predictions + sweep; no references
    assert html.count("not available") == len(OBJECTS) + 1
    assert any("dataset not found" in n for n in summary.notes)


def test_bad_folders_are_usage_errors(tmp_path, capsys):
    with pytest.raises(UsageError, match="run folder not found"):
        write_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "holds no config.yaml, metrics.csv or eval/" in capsys.readouterr().err


def test_cli_writes_the_page(run_folder, capsys):
    assert main(["report", str(run_folder), "--no-progress", "--size", "96"]) == 0
    assert "4 objects in the gallery" in capsys.readouterr().out
    assert (run_folder / "report" / "index.html").is_file()

"""Per-class tables: means, empty predictions, units."""

import csv
import io
import json

import pytest

from onet.evaluation.metrics import MeshMetrics, worst_case_metrics
from onet.evaluation.tables import (
    ObjectRow,
    build_table,
    class_names_from_metadata,
    format_classes_csv,
    format_latex,
    format_markdown,
    format_objects_csv,
    write_tables,
)


def _metrics(iou, chamfer, nc=0.9):
    return MeshMetrics(
        iou=iou, accuracy=chamfer, completeness=chamfer, chamfer_l1=chamfer, chamfer_l2=chamfer**2,
        normal_consistency=nc, fscore={0.01: 0.5}, empty=False,
    )


@pytest.fixture
def rows():
    return [
        ObjectRow("03001627", "a", _metrics(0.8, 0.01)),
        ObjectRow("03001627", "b", _metrics(0.6, 0.03)),
        ObjectRow("02691156", "c", _metrics(0.5, 0.02)),
        ObjectRow("02691156", "d", worst_case_metrics(), status="missing", reason="no prediction"),
    ]


def test_means_over_classes_and_objects_include_empty(rows):
    table = build_table(rows, class_names=class_names_from_metadata({"03001627": {"name": "chair,seat"}}))
    by_name = {c.name: c for c in table.classes}
    assert set(by_name) == {"chair", "02691156"}
    assert by_name["chair"].means["iou"] == pytest.approx(0.7)
    assert by_name["02691156"].means["iou"] == pytest.approx(0.25)  # the missing object counts as 0
    assert by_name["02691156"].n_empty == 1 and by_name["02691156"].count == 2
    assert table.mean_over_classes.means["iou"] == pytest.approx((0.7 + 0.25) / 2)
    assert table.mean_over_objects.means["iou"] == pytest.approx((0.8 + 0.6 + 0.5 + 0.0) / 4)
    assert table.mean_over_objects.n_empty == 1 and table.mean_over_objects.count == 4


def test_markdown_and_latex_state_the_unit(rows):
    table = build_table(rows)
    md = format_markdown(table)
    assert "x10 (unit: 1/10 of the box" in md
    assert "| Class | IoU | Chamfer-L1 x10 | Normal Consistency |" in md
    assert "F-score@1%" in md and "Count" in md and "Empty" in md
    # chair: Chamfer-L1 0.02 box units -> 0.200 in units of 1/10 of the box
    assert "0.200" in md
    plain = format_markdown(table, chamfer_scale=1)
    assert "plain (unit: the box" in plain and "x10" not in plain
    tex = format_latex(table)
    assert r"\caption{" in tex and "1/10 of the box" in tex and r"\toprule" in tex
    assert "nan" not in md.lower() + tex.lower()


def test_not_applicable_metrics_print_as_dashes_in_the_thesis_columns():
    m = MeshMetrics(iou=None, accuracy=0.1, completeness=0.2, chamfer_l1=0.15, chamfer_l2=0.03,
                    normal_consistency=None, fscore={0.01: 0.1})
    table = build_table([ObjectRow("x", "a", m)])
    assert "iou" not in table.columns and "normal_consistency" not in table.columns
    md = format_markdown(table)
    header = [c.strip() for c in md.splitlines()[2].strip("|").split("|")]
    row = [c.strip() for c in md.splitlines()[4].strip("|").split("|")]
    assert header[:4] == ["Class", "IoU", "Chamfer-L1 x10", "Normal Consistency"]
    assert row[1] == row[3] == "–" and row[2] == "1.500" and "nan" not in md.lower()
    tex = format_latex(table)
    assert "x & -- & 1.500 & --" in tex and "–" not in tex
    assert "iou" not in format_classes_csv(table).splitlines()[0]  # machine-readable files leave it out
    objects = list(csv.DictReader(io.StringIO(format_objects_csv([ObjectRow("x", "a", m)]))))
    assert objects[0]["iou"] == ""


def test_csv_and_json_files(rows, tmp_path):
    table = build_table(rows)
    paths = write_tables(rows, table, tmp_path, extra_json={"mode": "test"})
    assert sorted(p.name for p in paths.values()) == sorted(
        ["eval_meshes.csv", "eval_classes.csv", "eval_classes.md", "eval_classes.tex", "eval.json"]
    )
    classes = list(csv.DictReader(io.StringIO(format_classes_csv(table))))
    assert [c["name"] for c in classes][-2:] == ["mean (classes)", "mean (objects)"]
    assert float(classes[-1]["chamfer_l1"]) == pytest.approx(table.mean_over_objects.means["chamfer_l1"])
    data = json.loads((tmp_path / "eval.json").read_text())
    assert data["mode"] == "test" and "box units" in data["distance_unit"]
    assert len(data["objects"]) == 4 and data["objects"][3]["status"] == "missing"
    assert not list(tmp_path.glob(".*.tmp*"))  # no temporary files left behind


def test_empty_rows_error():
    with pytest.raises(ValueError, match="no rows"):
        build_table([])

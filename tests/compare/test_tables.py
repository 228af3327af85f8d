"""Comparison tables: the numbers of each run's own eval table, "–" where undefined, four formats."""

import csv
import io
import json

from onet.compare import compare_runs, format_comparison, write_comparison


def md_rows(text):
    """{first cell: [cells]} of a Markdown table."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("|:"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def runs(tmp_path, run_factory):
    return [run_factory(tmp_path / "onet"), run_factory(tmp_path / "r2n2", decoder="r2n2", offset=-0.1),
            run_factory(tmp_path / "psgn", decoder="psgn", points=True, offset=0.05)]


def test_method_rows_equal_each_runs_own_eval_table(tmp_path, run_factory):
    folders = runs(tmp_path, run_factory)
    table = md_rows(format_comparison(compare_runs(folders, metrics=["all"])))
    header = table.pop("Method")
    for folder, name in zip(folders, ["ONet", "3D-R2N2", "PSGN"]):
        own = md_rows((folder / "eval" / "eval_classes.md").read_text())
        own_header = own.pop("Class")
        mean = dict(zip(own_header, own["mean (classes)"]))
        for label, cell in zip(header, table[name]):
            assert cell == mean.get(label, "–"), (name, label)
    assert table["PSGN"][0] == "–" and table["PSGN"][2] == "–" and table["PSGN"][1] != "–"


def test_per_class_layout_groups_methods_under_each_metric(tmp_path, run_factory):
    comparison = compare_runs(runs(tmp_path, run_factory))
    table = md_rows(format_comparison(comparison, per_class=True))
    assert table["Class"][:3] == ["IoU (ONet)", "IoU (3D-R2N2)", "IoU (PSGN)"]
    assert list(table) == ["Class", "chair", "table", "mean"]
    own = md_rows((tmp_path / "onet" / "eval" / "eval_classes.md").read_text())
    assert table["chair"][0] == own["chair"][0] and table["mean"][0] == own["mean (classes)"][0]
    assert table["table"][2] == "–"


def test_latex_csv_and_json(tmp_path, run_factory):
    comparison = compare_runs(runs(tmp_path, run_factory))
    latex = format_comparison(comparison, "latex", per_class=True)
    assert r"\multicolumn{3}{c}{IoU}" in latex and "--" in latex and "–" not in latex
    rows = list(csv.reader(io.StringIO(format_comparison(comparison, "csv"))))
    assert rows[0] == ["Method", "IoU", "Chamfer-L1 x10", "Normal Consistency"] and rows[3][1] == "–"
    data = json.loads(format_comparison(comparison, "json", per_class=True))
    psgn = data["methods"][2]
    assert psgn["mean_over_classes"]["iou"] is None and psgn["classes"]["chair"]["normal_consistency"] is None
    raw = json.loads((tmp_path / "onet" / "eval" / "eval.json").read_text())["mean_over_classes"]["chamfer_l1"]
    assert data["methods"][0]["mean_over_classes"]["chamfer_l1"] == raw  # JSON keeps raw box units
    paths = write_comparison(comparison, tmp_path / "out")
    assert sorted(p.name for p in paths.values()) == ["compare.csv", "compare.json", "compare.md", "compare.tex"]

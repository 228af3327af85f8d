"""The page's building blocks: tick placement, plots, tables."""

import re

import pytest

from onet.report.html import Series, Table, _nice_ticks, line_plot, page, table_html


@pytest.mark.parametrize("lo, hi", [(10, 40), (350, 900), (0.31, 0.52), (-3.2, 7.9), (5, 5), (1e-6, 3e-6)])
def test_ticks_are_round_and_enclose_the_data(lo, hi):
    ticks = _nice_ticks(lo, hi)
    assert ticks[0] <= lo and ticks[-1] >= hi and 2 <= len(ticks) <= 12
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:])}
    assert len(steps) == 1


def test_plot_points_stay_inside_the_axes():
    svg = line_plot([Series("loss", [10, 20, 30, 40], [900, 600, 400, 350])], title="t", x_label="x", y_label="y")
    rect = re.search(r'<rect x="(\d+)" y="(\d+)" width="(\d+)" height="(\d+)"', svg)
    x0, y0, w, h = map(float, rect.groups())
    for cx, cy in re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)"', svg):
        assert x0 - 1e-6 <= float(cx) <= x0 + w + 1e-6 and y0 - 1e-6 <= float(cy) <= y0 + h + 1e-6
    assert line_plot([Series("empty", [], [])], title="t", x_label="x", y_label="y") == ""


def test_table_cells_carry_sort_values_and_escape_text():
    html = table_html(Table(["Class", "IoU"], [[("<b>chair</b>", "<b>chair</b>"), ("0.500", 0.5)]],
                            [["mean", "0.500"]]), table_id="t")
    assert "&lt;b&gt;chair&lt;/b&gt;" in html and "<b>" not in html
    assert 'data-value="0.5"' in html and "<tfoot>" in html and 'th data-col="1"' in html
    doc = page("a & b", "sub", [("s", "Section", html)])
    assert doc.startswith("<!DOCTYPE html>") and "<title>a &amp; b</title>" in doc and "<script>" in doc

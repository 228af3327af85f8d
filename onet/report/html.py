"""The report page: one static HTML file with inline CSS, SVG plots and a little plain JavaScript.

Nothing is fetched from the network and no server is needed: the page opens
from disk (file://) and refers only to images beside it.

Hooks for scripted browsers (tests, screenshots):
  index.html?sort=COL&dir=asc|desc   sorts the class table by column COL (0-based) on load,
                                      exactly as clicking its header does
  <body data-images-loaded=N data-images-failed=M data-sort="COL dir">
                                      set after the load event: how many images decoded,
                                      how many did not, and the table's current order
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e")


def esc(text) -> str:
    return html.escape(str(text), quote=True)


@dataclass
class Series:
    label: str
    x: list[float]
    y: list[float]


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About n round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)  # the ticks enclose [lo, hi]
    return [round(i * step, 12) for i in range(first, last + 1)]


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.1e}"
    return f"{v:g}"


def line_plot(series: list[Series], *, title: str, x_label: str, y_label: str, width: int = 420,
              height: int = 260) -> str:
    """An inline SVG line plot (markers at every point) of one or more series; '' when nothing to draw."""
    series = [s for s in series if s.x]
    if not series:
        return ""
    xs = [v for s in series for v in s.x]
    ys = [v for s in series for v in s.y]
    x_ticks = _nice_ticks(min(xs), max(xs))
    y_ticks = _nice_ticks(min(ys), max(ys))
    x0, x1 = x_ticks[0], x_ticks[-1]
    y0, y1 = y_ticks[0], y_ticks[-1]
    left, right, top, bottom = 58, 12, 28, 42
    pw, ph = width - left - right, height - top - bottom

    def X(v):
        return left + (v - x0) / ((x1 - x0) or 1) * pw

    def Y(v):
        return top + ph - (v - y0) / ((y1 - y0) or 1) * ph

    parts = [f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}">',
             f'<text x="{width / 2}" y="16" text-anchor="middle" class="ptitle">{esc(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for t in x_ticks:
        parts.append(f'<line x1="{X(t):.1f}" y1="{top + ph}" x2="{X(t):.1f}" y2="{top + ph + 4}" stroke="#999"/>'
                     f'<text x="{X(t):.1f}" y="{top + ph + 16}" text-anchor="middle">{_fmt(t)}</text>')
    for t in y_ticks:
        parts.append(f'<line x1="{left}" y1="{Y(t):.1f}" x2="{left + pw}" y2="{Y(t):.1f}" stroke="#eee"/>'
                     f'<text x="{left - 5}" y="{Y(t) + 4:.1f}" text-anchor="end">{_fmt(t)}</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle">{esc(x_label)}</text>')
    parts.append(f'<text transform="translate(14 {top + ph / 2}) rotate(-90)" text-anchor="middle">'
                 f'{esc(y_label)}</text>')
    for i, s in enumerate(series):
        color = _PALETTE[i % len(_PALETTE)]
        pts = " ".join(f"{X(a):.1f},{Y(b):.1f}" for a, b in zip(s.x, s.y))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        if len(s.x) <= 60:
            parts += [f'<circle cx="{X(a):.1f}" cy="{Y(b):.1f}" r="2.5" fill="{color}"/>' for a, b in zip(s.x, s.y)]
        if len(series) > 1:
            parts.append(f'<text x="{left + 8}" y="{top + 14 + 14 * i}" fill="{color}">{esc(s.label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


@dataclass
class Table:
    """A table: header labels, body rows of (display text, sort value) cells, footer rows (not sorted)."""

    header: list[str]
    rows: list[list[tuple[str, float | str]]]
    footer: list[list[str]]
    sortable: bool = True


def table_html(table: Table, *, table_id: str) -> str:
    cls = "sortable" if table.sortable else "plain"
    head = "".join(f'<th data-col="{i}" title="sort by {esc(h)}">{esc(h)}</th>' for i, h in enumerate(table.header))
    body = []
    for row in table.rows:
        cells = []
        for text, value in row:
            numeric = isinstance(value, (int, float)) and math.isfinite(value)
            data = f' data-value="{value!r}"' if numeric else f' data-text="{esc(value)}"'
            cells.append(f'<td{data}{" class=num" if numeric else ""}>{esc(text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    foot = "".join("<tr>" + "".join(f"<td{' class=num' if i else ''}>{esc(c)}</td>" for i, c in enumerate(row))
                   + "</tr>" for row in table.footer)
    return (f'<table id="{table_id}" class="{cls}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody>' + (f"<tfoot>{foot}</tfoot>" if foot else "") + "</table>")


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto; max-width: 1200px;
       color: #222; padding: 0 16px; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 8px 0; font-size: 0.92em; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e4e4e4; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.sortable th { cursor: pointer; user-select: none; background: #f4f6fa; }
table.sortable th:hover { background: #e6ebf5; }
th.asc::after { content: " \\25B2"; } th.desc::after { content: " \\25BC"; }
tfoot td { font-weight: 600; background: #fafafa; }
.plots { display: flex; flex-wrap: wrap; gap: 16px; }
svg.plot text { font-size: 11px; fill: #333; } svg.plot .ptitle { font-size: 13px; font-weight: 600; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 14px; }
.item { border: 1px solid #ddd; border-radius: 6px; padding: 6px; background: #fff; }
.item .imgs { display: flex; gap: 4px; }
.item figure { margin: 0; text-align: center; font-size: 0.78em; color: #555; }
.item img { width: 112px; height: 112px; border: 1px solid #eee; display: block; }
.item .cap { font-size: 0.82em; margin-top: 4px; }
.item .cap b { font-family: ui-monospace, monospace; }
.missing { width: 112px; height: 112px; display: flex; align-items: center; justify-content: center;
           background: #f6f6f6; color: #999; font-size: 0.8em; border: 1px solid #eee; }
pre { background: #f6f8fa; padding: 10px; overflow: auto; max-height: 420px; font-size: 0.85em; }
.note { color: #777; font-style: italic; }
"""

JS = """
(function () {
  function cellValue(row, col) {
    var td = row.children[col];
    if (!td) return "";
    if (td.dataset.value !== undefined) return parseFloat(td.dataset.value);
    return (td.dataset.text !== undefined ? td.dataset.text : td.textContent).toLowerCase();
  }
  function sortTable(table, col, dir) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellValue(a, col), y = cellValue(b, col);
      var numeric = typeof x === "number" && typeof y === "number";
      var c = numeric ? x - y : String(x).localeCompare(String(y));
      return dir === "asc" ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.classList.remove("asc", "desc");
      if (i === col) th.classList.add(dir);
    });
    table.dataset.sort = col + " " + dir;
    document.body.dataset.sort = col + " " + dir;
  }
  window.onetSortTable = sortTable;
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, i) {
      th.addEventListener("click", function () {
        var dir = th.classList.contains("asc") ? "desc" : "asc";
        sortTable(table, i, dir);
      });
    });
  });
  var query = new URLSearchParams(window.location.search);
  if (query.has("sort")) {
    var table = document.querySelector("table.sortable");
    var col = parseInt(query.get("sort"), 10);
    if (table && col >= 0 && col < table.tHead.rows[0].cells.length) {
      var th = table.tHead.rows[0].cells[col];
      th.click();                       /* the same path as a user's click */
      if (query.get("dir") === "desc") th.click();
    }
  }
  window.addEventListener("load", function () {
    var images = Array.prototype.slice.call(document.images);
    var loaded = images.filter(function (im) { return im.complete && im.naturalWidth > 0; }).length;
    document.body.dataset.imagesLoaded = loaded;
    document.body.dataset.imagesFailed = images.length - loaded;
    var status = document.getElementById("image-status");
    if (status) status.textContent = loaded + " of " + images.length + " images loaded";
  });
})();
"""


def page(title: str, subtitle: str, sections: list[tuple[str, str, str]]) -> str:
    """The whole document. sections: (anchor id, heading, inner HTML)."""
    nav = " &middot; ".join(f'<a href="#{sid}">{esc(head)}</a>' for sid, head, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{esc(head)}</h2>{inner}</section>' for sid, head, inner in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{esc(title)}</title>"
            f"<style>{CSS}</style></head><body>"
            f"<h1>{esc(title)}</h1><p class=\"sub\">{subtitle}</p><p>{nav}</p>{body}"
            f"<p class=\"note\" id=\"image-status\"></p><script>{JS}</script></body></html>\n")

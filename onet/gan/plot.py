"""Small Pillow-only plots for the GAN diagnostics (no matplotlib): axes, lines, arrows, points.

`Figure` holds one RGB image with a grid of panels; a `Panel` maps data
coordinates (optionally log-scaled in y) to pixels. `Figure.png()` returns
the encoded bytes, to be written with onet.utils.io.write_bytes_atomic.
"""

from __future__ import annotations

import io
import math
from typing import Sequence

import numpy as np

COLORS = {"sim": (214, 39, 40), "alt": (31, 119, 180), "data": (31, 119, 180), "fake": (255, 127, 14),
          "field": (150, 150, 150), "grid": (225, 225, 225), "text": (0, 0, 0)}
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def _font(size: int):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed size
        return ImageFont.load_default()


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    step = 10 ** math.floor(math.log10((hi - lo) / n))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (m * step) <= n:
            step *= m
            break
    start = math.ceil(lo / step - 1e-9) * step
    return [round(start + i * step, 10) for i in range(int((hi - start) / step + 1e-9) + 1)]


def _fmt(v: float) -> str:
    return f"{v:.0e}" if v != 0 and (abs(v) < 1e-2 or abs(v) >= 1e4) else f"{v:g}"


class Panel:
    """One plot area: data box [x0, x1] x [y0, y1] drawn into pixel box (left, top, right, bottom)."""

    def __init__(self, fig: "Figure", box, xlim, ylim, *, title: str = "", xlabel: str = "", ylabel: str = "",
                 logy: bool = False):
        from PIL import ImageDraw
        self.draw = ImageDraw.Draw(fig.img)
        self.font, self.small = fig.font, fig.small
        left, top, right, bottom = box
        self.box = (left + 46, top + 22, right - 8, bottom - 34)
        self.logy = logy
        self.xlim = xlim
        self.ylim = (math.log10(ylim[0]), math.log10(ylim[1])) if logy else ylim
        self._axes(title, xlabel, ylabel)

    def px(self, x, y):
        l, t, r, b = self.box
        fy = (math.log10(max(y, 1e-300)) if self.logy else y)
        u = l + (x - self.xlim[0]) / (self.xlim[1] - self.xlim[0]) * (r - l)
        v = b - (fy - self.ylim[0]) / (self.ylim[1] - self.ylim[0]) * (b - t)
        return u, v

    def inside(self, x, y) -> bool:
        fy = math.log10(y) if self.logy and y > 0 else (y if not self.logy else -math.inf)
        return self.xlim[0] <= x <= self.xlim[1] and self.ylim[0] <= fy <= self.ylim[1]

    def _axes(self, title, xlabel, ylabel):
        d, (l, t, r, b) = self.draw, self.box
        for x in _ticks(*self.xlim):
            u, _ = self.px(x, self.ylim[0] if not self.logy else 10 ** self.ylim[0])
            d.line([(u, t), (u, b)], fill=COLORS["grid"])
            d.text((u, b + 3), _fmt(x), fill=COLORS["text"], font=self.small, anchor="ma")
        if self.logy:
            yt = [10.0 ** k for k in range(math.ceil(self.ylim[0]), math.floor(self.ylim[1]) + 1)]
        else:
            yt = _ticks(*self.ylim)
        for y in yt:
            _, v = self.px(self.xlim[0], y)
            d.line([(l, v), (r, v)], fill=COLORS["grid"])
            d.text((l - 3, v), _fmt(y), fill=COLORS["text"], font=self.small, anchor="rm")
        d.rectangle([l, t, r, b], outline=COLORS["text"])
        d.text(((l + r) / 2, t - 4), title, fill=COLORS["text"], font=self.font, anchor="md")
        d.text(((l + r) / 2, b + 17), xlabel, fill=COLORS["text"], font=self.small, anchor="ma")
        d.text((l - 44, t - 4), ylabel, fill=COLORS["text"], font=self.small, anchor="ld")

    def line(self, xs: Sequence[float], ys: Sequence[float], color, width: int = 2) -> None:
        """A polyline, broken where it leaves the panel or is not finite."""
        seg = []
        for x, y in zip(xs, ys):
            if np.isfinite(x) and np.isfinite(y) and self.inside(x, y):
                seg.append(self.px(x, y))
                continue
            if len(seg) > 1:
                self.draw.line(seg, fill=color, width=width)
            seg = []
        if len(seg) > 1:
            self.draw.line(seg, fill=color, width=width)

    def points(self, xs, ys, color, r: float = 1.5) -> None:
        for x, y in zip(xs, ys):
            if self.inside(x, y):
                u, v = self.px(x, y)
                self.draw.ellipse([u - r, v - r, u + r, v + r], fill=color)

    def arrow(self, x, y, dx, dy, color, head: float = 4.0) -> None:
        """An arrow from (x, y) to (x + dx, y + dy) in data units."""
        (u0, v0), (u1, v1) = self.px(x, y), self.px(x + dx, y + dy)
        self.draw.line([(u0, v0), (u1, v1)], fill=color, width=1)
        ang, n = math.atan2(v1 - v0, u1 - u0), math.hypot(u1 - u0, v1 - v0)
        if n > 1:
            for s in (2.6, -2.6):
                self.draw.line([(u1, v1), (u1 + head * math.cos(ang + s), v1 + head * math.sin(ang + s))],
                               fill=color, width=1)

    def legend(self, entries: Sequence[tuple[str, tuple]]) -> None:
        l, t, _, _ = self.box
        for i, (name, color) in enumerate(entries):
            y = t + 8 + 14 * i
            self.draw.line([(l + 6, y), (l + 22, y)], fill=color, width=3)
            self.draw.text((l + 26, y), name, fill=COLORS["text"], font=self.small, anchor="lm")


class Figure:
    """A white canvas of rows x cols panels, each `size` pixels square-ish."""

    def __init__(self, rows: int = 1, cols: int = 1, size=(420, 400)):
        from PIL import Image
        self.rows, self.cols, self.size = rows, cols, size
        self.img = Image.new("RGB", (cols * size[0], rows * size[1]), "white")
        self.font, self.small = _font(14), _font(11)

    def panel(self, row: int, col: int, xlim, ylim, **kw) -> Panel:
        w, h = self.size
        return Panel(self, (col * w, row * h, (col + 1) * w, (row + 1) * h), xlim, ylim, **kw)

    def png(self) -> bytes:
        buf = io.BytesIO()
        self.img.save(buf, format="PNG")
        return buf.getvalue()

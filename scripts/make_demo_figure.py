"""Tile `onet demo` previews (input image | predicted mesh) into the README figure.

    python scripts/make_demo_figure.py out/demo --out scripts/figures/demo.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("demo_dir", help="output folder of `onet demo`")
    parser.add_argument("--out", default="scripts/figures/demo.png")
    parser.add_argument("--per-class", type=int, default=1, help="previews per class")
    parser.add_argument("--columns", type=int, default=3)
    args = parser.parse_args()

    previews = Path(args.demo_dir) / "generation" / "previews"
    tiles = []
    for cat in sorted(p for p in previews.iterdir() if p.is_dir()):
        tiles += [Image.open(p).convert("RGB") for p in sorted(cat.glob("*.png"))[:args.per_class]]
    if not tiles:
        raise SystemExit(f"no previews in {previews}")
    w, h = tiles[0].size
    rows = (len(tiles) + args.columns - 1) // args.columns
    sheet = Image.new("RGB", (w * args.columns, h * rows), "white")
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % args.columns) * w, (i // args.columns) * h))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out} ({len(tiles)} previews)")


if __name__ == "__main__":
    main()

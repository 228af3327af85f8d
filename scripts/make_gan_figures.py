"""Figures of the README's GAN section: the Dirac-GAN panel and the 2-D benchmark samples.

    python scripts/make_gan_figures.py                       # scripts/figures/gan_dirac.png
    python scripts/make_gan_figures.py --bench2d out/gan/bench2d   # + gan_bench2d.png from a finished run

The Dirac panel is `onet gan dirac` at its defaults (γ = 0.3, σ = 0.7, η = 0.5,
h = 0.1, 500 steps from (1, 1)); six of its per-method PNGs side by side.
"""

from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

from PIL import Image

from onet.gan.dirac import run_dirac
from onet.utils.io import write_bytes_atomic

FIGURES = Path(__file__).resolve().parent / "figures"
PANEL = ("gan", "wgan", "wgan-gp", "instance-noise", "r1", "consensus")


def dirac_panel(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run_dirac(list(PANEL), out_dir=tmp, progress=False)
        tiles = [Image.open(Path(tmp) / f"{m}.png").convert("RGB") for m in PANEL]
        w, h = tiles[0].size
        img = Image.new("RGB", (3 * w, 2 * h), "white")
        for i, t in enumerate(tiles):
            img.paste(t, ((i % 3) * w, (i // 3) * h))
        buf = io.BytesIO()
        img.save(buf, format="PNG", optimize=True)
        write_bytes_atomic(out, buf.getvalue())


def bench2d_samples(run_dir: Path, out: Path) -> None:
    # copied as written: resampling the scatter plots blurs them and quadruples the PNG
    write_bytes_atomic(out, (run_dir / "samples.png").read_bytes())
    print((run_dir / "bench2d.md").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench2d", type=Path, default=None, help="a finished `onet gan bench2d` output folder")
    args = ap.parse_args()
    dirac_panel(FIGURES / "gan_dirac.png")
    if args.bench2d is not None:
        bench2d_samples(args.bench2d, FIGURES / "gan_bench2d.png")


if __name__ == "__main__":
    main()

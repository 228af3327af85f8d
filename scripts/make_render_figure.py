"""Contact sheet of `onet preprocess` renderings before and after materials, with depth.

Runs the real pipeline twice on coloured meshes, with `--no-materials` (every
mesh grey, as onet rendered before) and with materials and `--depth`, and
tiles the JPEG views it wrote: per object two views grey, the same two views
with the mesh's colours, and the depth map of the first view (near bright,
far dark). Meshes: the procedurally coloured synthetic shapes of
scripts/textured_shapes.py, plus textured models of Debian's
`assimp-testmodels` package when --assimp points at its models folder
(never copied into the repository).

    python scripts/make_render_figure.py --out scripts/figures/renderings.png
    python scripts/make_render_figure.py --assimp /usr/share/assimp/models
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))
from textured_shapes import write_textured_shapes  # noqa: E402

from onet.data.formats import load_depth_npz  # noqa: E402
from onet.preprocess import PreprocessOptions, preprocess_dataset  # noqa: E402
from onet.preprocess.discover import find_inputs  # noqa: E402

# textured models of assimp-testmodels (BSD-3-clause, (c) the ASSIMP Development Team)
ASSIMP_MODELS = {"spider (assimp, texture maps)": "OBJ/spider.obj"}
VIEWS = (0, 1)
SCALE = 2  # pixels of the sheet per rendered pixel


def depth_image(depth: np.ndarray) -> np.ndarray:
    """Depth as an image: near surfaces light, far ones dark (a warm ramp); white background."""
    seen = depth > 0
    out = np.full(depth.shape + (3,), 255, np.uint8)
    if seen.any():
        d = depth[seen]
        t = (d - d.min()) / max(np.ptp(d), 1e-9)  # 0 near, 1 far
        stops = np.array([[252, 230, 150], [230, 120, 50], [150, 40, 60], [50, 20, 70]], float)
        x = t * (len(stops) - 1)
        i = np.minimum(x.astype(int), len(stops) - 2)
        f = (x - i)[:, None]
        out[seen] = ((1 - f) * stops[i] + f * stops[i + 1]).round().astype(np.uint8)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="scripts/figures/renderings.png")
    parser.add_argument("--assimp", type=Path, default=None, help="assimp-testmodels folder (/usr/share/assimp/models)")
    parser.add_argument("--img-size", type=int, default=137)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="onet-render-figure-") as tmp:
        tmp = Path(tmp)
        names = write_textured_shapes(tmp / "in")
        if args.assimp is not None:
            for name, rel in ASSIMP_MODELS.items():
                src = args.assimp / rel
                if not src.is_file():
                    print(f"skipping {name}: {src} not found")
                    continue
                # the model (as a ShapeNet v1 model.obj), its material file and the images beside it
                dst = tmp / "in" / "assimp" / src.stem
                dst.mkdir(parents=True)
                shutil.copy(src, dst / "model.obj")
                for extra in [src.with_suffix(".mtl"), *src.parent.glob("*.jpg"), *src.parent.glob("*.png")]:
                    if extra.is_file():
                        shutil.copy(extra, dst / extra.name)
                names[name] = dst / "model.obj"
        by_path = {item.path: (item.category, item.model_id) for item in find_inputs(tmp / "in")}
        ids = {name: by_path[path] for name, path in names.items()}
        common = dict(n_points=2000, n_surface=2000, n_views=max(VIEWS) + 1, img_size=args.img_size,
                      watertight_resolution=64, save_mesh=False)
        for kind, opts in (("grey", dict(materials=False)), ("materials", dict(depth=True))):
            summary = preprocess_dataset(tmp / "in", tmp / kind, options=PreprocessOptions(**common, **opts),
                                         progress=False)
            for item, reason in summary.failures:
                print(f"{kind}: {item.category}/{item.model_id} failed: {reason}")

        s = args.img_size * SCALE
        label_w, head_h = 190, 24
        headers = [f"before (grey) {v}" for v in VIEWS] + [f"after (materials) {v}" for v in VIEWS] + ["depth, view 0"]
        sheet = Image.new("RGB", (label_w + s * len(headers), head_h + s * len(names)), "white")
        draw = ImageDraw.Draw(sheet)
        for j, h in enumerate(headers):
            draw.text((label_w + j * s + 6, 6), h, fill=(0, 0, 0))
        for r, (name, (cat, mid)) in enumerate(ids.items()):
            draw.text((6, head_h + r * s + s // 2 - 6), name, fill=(0, 0, 0))
            tiles = []
            for kind in ("grey", "materials"):
                folder = tmp / kind / cat / mid / "img_choy2016"
                tiles += [np.asarray(Image.open(folder / f"{v:03d}.jpg").convert("RGB")) for v in VIEWS]
            depth = load_depth_npz(tmp / "materials" / cat / mid / "img_choy2016" / "depth.npz")[VIEWS[0]]
            tiles.append(depth_image(depth))
            for j, tile in enumerate(tiles):
                img = Image.fromarray(tile).resize((s, s), Image.NEAREST)
                sheet.paste(img, (label_w + j * s, head_h + r * s))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(f"wrote {args.out} ({len(names)} models)")


if __name__ == "__main__":
    main()

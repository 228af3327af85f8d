"""Check a dataset in the DESIGN §4 layout before training on it.

    python external/check_dataset.py /data/ShapeNet            # files present?
    python external/check_dataset.py /data/ShapeNet --deep     # ... and loadable?
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from onet.data.dataset import DatasetError, list_categories
from onet.data.formats import load_pointcloud_npz, load_points_npz, read_binvox, read_split

REQUIRED = {"points.npz": load_points_npz, "pointcloud.npz": load_pointcloud_npz, "model.binvox": read_binvox}


def check(root: Path, splits: list[str], *, img_folder: str, deep: bool) -> tuple[list[list], list[str]]:
    """Rows (category, split, listed, missing folder, missing file counts...) and problem lines."""
    rows, problems = [], []
    for cat in list_categories(root, None):
        for split in splits:
            lst = root / cat / f"{split}.lst"
            if not lst.is_file():
                problems.append(f"{lst}: missing")
                continue
            ids = read_split(lst)
            missing = Counter()
            for model_id in ids:
                folder = root / cat / model_id
                if not folder.is_dir():
                    missing["folder"] += 1
                    problems.append(f"{folder}: listed in {lst.name} but missing")
                    continue
                for name, loader in REQUIRED.items():
                    path = folder / name
                    if not path.is_file():
                        missing[name] += 1
                        problems.append(f"{path}: missing")
                    elif deep:
                        try:
                            loader(path)
                        except Exception as exc:  # report every kind of damage, keep scanning
                            missing[name] += 1
                            problems.append(f"{path}: unreadable ({exc})")
                if not any((folder / img_folder).glob("*.jpg")) and not any((folder / img_folder).glob("*.png")):
                    missing[img_folder] += 1
                    problems.append(f"{folder / img_folder}: no images")
            rows.append([cat, split, len(ids), missing["folder"], *(missing[n] for n in REQUIRED), missing[img_folder]])
    return rows, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset")
    parser.add_argument("--splits", nargs="+", default=["train", "val", "test"])
    parser.add_argument("--img-folder", default="img_choy2016")
    parser.add_argument("--deep", action="store_true", help="also load every file (slow on the full ShapeNet)")
    args = parser.parse_args(argv)
    try:
        rows, problems = check(Path(args.dataset), args.splits, img_folder=args.img_folder, deep=args.deep)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    header = ["category", "split", "listed", "no folder", *REQUIRED, args.img_folder]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(x) for x in row) + " |")
    for line in problems[:50]:
        print(line)
    if len(problems) > 50:
        print(f"... and {len(problems) - 50} more problems")
    print("dataset OK" if not problems else f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Finding the objects to preprocess in a ShapeNet tree or any folder of meshes."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from onet.geometry.formats import ARCHIVE_EXTENSIONS, ASSIMP_EXTENSIONS, MESH_EXTENSIONS


# 3-D model formats onet does not read (here), and archives that may hold models: a folder of
# them is reported, not passed over in silence (textures, materials and buffers beside the
# meshes are not models and are not counted)
OTHER_MODEL_SUFFIXES = tuple(s for s in dict.fromkeys(ASSIMP_EXTENSIONS + (
    ".max", ".md5mesh", ".step", ".stp", ".iges", ".igs", ".usd", ".usda", ".usdc", ".usdz", ".wrl", ".vrml",
    ".m3d", ".jt", ".raw", ".mesh", ".bvh") + ARCHIVE_EXTENSIONS) if s not in MESH_EXTENSIONS)


class InputItem(NamedTuple):
    """One object to preprocess: output goes to <output>/<category>/<model_id>/."""

    category: str
    model_id: str
    path: Path


def find_inputs(input_dir: str | os.PathLike) -> list[InputItem]:
    """List the objects under `input_dir`, sorted by (category, model_id).

    Recognised layouts, which may be mixed:
      - ShapeNetCore v1: <synset>/<model_id>/model.obj
      - ShapeNetCore v2: <synset>/<model_id>/models/model_normalized.obj
      - any folder of mesh files (geometry.formats.MESH_EXTENSIONS): the first
        sub-folder is the category, the file path below it (without the
        extension, '/' -> '_') the model id. Files directly in `input_dir`
        form one category named after `input_dir` ("default" if it has none).
    Other mesh files inside a recognised ShapeNet model folder are ignored.
    A broken symbolic link with a mesh extension is listed like a file, so the
    run reports it by name instead of leaving it out unseen.
    """
    return scan_inputs(input_dir)[0]


def scan_inputs(input_dir: str | os.PathLike) -> tuple[list[InputItem], Counter]:
    """`find_inputs`'s objects and, from the same walk of the tree, {suffix: count} of the files
    in 3-D model formats onet does not read (OTHER_MODEL_SUFFIXES; hidden files aside)."""
    root = Path(input_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: input folder does not exist")
    files, unread = [], Counter()
    for p in root.rglob("*"):
        suffix = p.suffix.lower()
        if p.name.startswith(".") or (suffix not in MESH_EXTENSIONS and suffix not in OTHER_MODEL_SUFFIXES):
            continue
        if suffix in OTHER_MODEL_SUFFIXES:
            if p.is_file():
                unread[suffix] += 1
        elif p.is_file() or (p.is_symlink() and not p.exists()):
            files.append(p)
    files.sort()
    items: dict[tuple[str, str], InputItem] = {}
    shapenet_dirs: set[Path] = set()
    for p in files:
        parts = p.relative_to(root).parts
        if len(parts) == 3 and parts[2] == "model.obj":
            items[(parts[0], parts[1])] = InputItem(parts[0], parts[1], p)
            shapenet_dirs.add(root / parts[0] / parts[1])
        elif len(parts) == 4 and parts[2] == "models" and parts[3] == "model_normalized.obj":
            items[(parts[0], parts[1])] = InputItem(parts[0], parts[1], p)
            shapenet_dirs.add(root / parts[0] / parts[1])
    root_category = root.resolve().name or "default"
    for p in files:
        if any(d in p.parents for d in shapenet_dirs):
            continue
        parts = p.relative_to(root).parts
        if len(parts) == 1:
            category, model_id = root_category, p.stem
        else:
            category, model_id = parts[0], "_".join(parts[1:-1] + (p.stem,))
        if (category, model_id) in items:  # same name, other format: keep both, told apart by extension
            model_id = f"{model_id}_{p.suffix.lower().lstrip('.')}"
        items[(category, model_id)] = InputItem(category, model_id, p)
    return [items[k] for k in sorted(items)], unread


def describe_unread(counts: Counter) -> str:
    """'25 .fbx, 1 .3mf files' (or '1 .fbx file') for a message; '' when there are none."""
    if not counts:
        return ""
    listed = ", ".join(f"{n} {suffix}" for suffix, n in counts.most_common())
    return listed + (" files" if sum(counts.values()) > 1 else " file")

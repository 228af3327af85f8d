"""The mesh formats onet reads: one list for the readers (mesh_io, mesh_files) and the listers
(preprocess, evaluation). A module of its own without trimesh, so that importing training or
generation does not load trimesh until a mesh is read."""

import importlib.util

# .dae through pycollada; glTF with separate buffers and COLLADA through mesh_io's trimesh loader
TRIMESH_EXTENSIONS = (".obj", ".off", ".ply", ".stl", ".glb", ".gltf", ".dae")

# through assimp (the assimp-py package, one child process per file: geometry/assimp_reader.py);
# each of these loaded Debian's assimp test models of its format (AC3D: FlightGear and racing
# simulators; 3DS, FBX, Blender, DirectX, LightWave, Milkshape, Quake and Unreal game formats ...)
ASSIMP_EXTENSIONS = (".3ds", ".3mf", ".ac", ".ac3d", ".acc", ".amf", ".ase", ".b3d", ".blend", ".cob", ".dxf",
                     ".fbx", ".hmp", ".ifc", ".iqm", ".irr", ".irrmesh", ".lwo", ".lws", ".lxo", ".md2", ".md3",
                     ".md5mesh", ".mdc", ".mdl", ".ms3d", ".nff", ".ogex", ".q3o", ".q3s", ".sib", ".smd", ".ter",
                     ".x", ".x3d", ".xgl", ".zgl")

# assimp-py has wheels for CPython 3.10-3.13 (setup.py installs it there); without it those
# formats are reported as unread, with the package to install (found without importing it:
# its library is 12 MB)
ASSIMP_AVAILABLE = importlib.util.find_spec("assimp_py") is not None

MESH_EXTENSIONS = TRIMESH_EXTENSIONS + (ASSIMP_EXTENSIONS if ASSIMP_AVAILABLE else ())


def describe_readable() -> str:
    """The formats onet reads, for messages: the common ones by name, assimp's counted."""
    text = ", ".join(e.lstrip(".") for e in TRIMESH_EXTENSIONS)
    if ASSIMP_AVAILABLE:
        text += f" and {len(ASSIMP_EXTENSIONS)} more through assimp (3ds, ac, fbx, blend, x, lwo ...)"
    return text


# archives as models are downloaded (Sketchfab, Thingiverse, Sweet Home 3D's .sh3f furniture
# libraries): not read, but counted, so that a folder of them is not a silent "nothing found"
ARCHIVE_EXTENSIONS = (".zip", ".sh3f", ".sh3d", ".7z", ".rar", ".tar", ".tgz", ".gz", ".bz2", ".xz")


def unread_advice(suffixes) -> str:
    """What to do about model files (or archives) with these suffixes, which onet left out."""
    suffixes = set(suffixes)
    archives = sorted(suffixes & set(ARCHIVE_EXTENSIONS))
    models = suffixes - set(archives)
    advice = []
    if archives:
        advice.append(f"unpack the archives ({', '.join(archives)}) into the folder first")
    missing = sorted(models & set(ASSIMP_EXTENSIONS)) if not ASSIMP_AVAILABLE else []
    if missing:
        advice.append(f"pip install assimp-py (Python 3.10-3.13) to read {', '.join(missing)}")
    if models - set(missing):
        advice.append(f"convert {'the other ' if missing else ''}models to one of: {describe_readable()}")
    return "; ".join(advice)

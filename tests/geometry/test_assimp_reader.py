"""Formats read through assimp (onet/geometry/assimp_reader.py): geometry, transforms and material
colours of a real file, and errors, hangs and crashes of the reader named by file."""

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from onet.geometry import assimp_reader
from onet.geometry.formats import ASSIMP_AVAILABLE, ASSIMP_EXTENSIONS, MESH_EXTENSIONS, unread_advice
from onet.geometry.mesh_files import read_mesh
from onet.geometry.mesh_io import MeshLoadError, load_mesh, load_mesh_with_appearance
from onet.preprocess.pipeline import PreprocessOptions, preprocess_dataset

pytestmark = pytest.mark.skipif(not ASSIMP_AVAILABLE, reason="assimp-py is not installed")

REPO = Path(__file__).resolve().parents[2]
CUBE = [(x, y, z) for x in (0, 1) for y in (0, 1) for z in (0, 1)]
QUADS = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]


def _ac_object(name, loc, material, surfaces, kind="0x10", texture=None):
    lines = ["OBJECT poly", f'name "{name}"'] + ([f'texture "{texture}"'] if texture else [])
    lines += ["loc {} {} {}".format(*loc), f"numvert {len(CUBE)}"]
    lines += ["{} {} {}".format(*v) for v in CUBE] + [f"numsurf {len(surfaces)}"]
    corners = [(0, 0), (1, 0), (1, 1), (0, 1)]  # each quad spans the whole texture
    for refs in surfaces:
        lines += [f"SURF {kind}", f"mat {material}", f"refs {len(refs)}"]
        lines += ["{} {} {}".format(i, *corners[k % 4]) for k, i in enumerate(refs)]
    return lines + ["kids 0"]


def _ac_file(path, objects):
    """An AC3D file (FlightGear's format) with a red and a blue material and the given objects."""
    head = ["AC3Db"] + [f'MATERIAL "{n}" rgb {c}  amb 0.2 0.2 0.2  emis 0 0 0  spec 0.5 0.5 0.5  shi 10  trans 0'
                        for n, c in (("red", "1 0 0"), ("blue", "0 0 1"))]
    path.write_text("\n".join(head + ["OBJECT world", f"kids {len(objects)}"] + sum(objects, [])) + "\n")
    return path


def test_ac3d_scene_with_transforms_and_materials(tmp_path):
    # two unit cubes of quads, the second moved by its node's `loc`, one red and one blue
    path = _ac_file(tmp_path / "two.ac", [_ac_object("a", (0, 0, 0), 0, QUADS), _ac_object("b", (3, 0, 0), 1, QUADS)])
    mesh = load_mesh(path)
    assert mesh.faces.shape == (24, 3) and len(mesh.vertices) == 16  # quads triangulated, corners shared
    np.testing.assert_allclose(mesh.bounds, [[0, 0, 0], [4, 1, 1]], atol=1e-6)
    assert mesh.area == pytest.approx(12.0)
    mesh, appearance = load_mesh_with_appearance(path)
    colors, counts = np.unique(appearance.face_colors, axis=0, return_counts=True)
    np.testing.assert_allclose(colors, [[0, 0, 1], [1, 0, 0]])
    assert counts.tolist() == [12, 12]
    left = mesh.triangles_center[:, 0] < 2  # the red cube is the one at the origin
    assert (appearance.face_colors[left] == [1, 0, 0]).all()
    v, f = read_mesh(path)  # the reader of eval references and generate inputs takes it too
    assert f.shape == (24, 3) and v.dtype == np.float32



def test_texture_maps_are_found_beside_the_file(tmp_path):
    from PIL import Image

    # the file names its texture by the author's absolute Windows path, in other letter case
    # (as FBX and 3DS exports do): found by its name in the model's folder
    Image.new("RGB", (4, 4), (0, 200, 0)).save(tmp_path / "grass.png")
    path = _ac_file(tmp_path / "textured.ac", [_ac_object("a", (0, 0, 0), 0, QUADS, texture="C:\\art\\GRASS.PNG")])
    mesh, appearance = load_mesh_with_appearance(path)
    assert len(appearance.textures) == 1 and (appearance.face_texture == 0).all()
    np.testing.assert_array_equal(appearance.textures[0][0, 0], [0, 200, 0])
    assert appearance.uv.min() >= 0 and appearance.uv.max() <= 1 and np.ptp(appearance.uv, axis=0).min() == 1
    np.testing.assert_allclose(appearance.face_colors, 1)  # the texture replaces the material colour
    # no such file: the material colour (red) instead
    (tmp_path / "grass.png").unlink()
    mesh, appearance = load_mesh_with_appearance(path)
    assert appearance.face_texture is None and (appearance.face_colors == [1, 0, 0]).all()

def test_reader_errors_name_the_file(tmp_path):
    bad = tmp_path / "broken.3ds"
    bad.write_bytes(b"\x4d\x4d" + bytes(range(200)))
    with pytest.raises(MeshLoadError, match=r"broken\.3ds: unreadable mesh file"):
        load_mesh(bad)
    # AC3D wires beside the faces (assimp-py refuses any scene with lines): read without them
    wire = _ac_object("w", (0, 0, 0), 0, [(0, 1), (2, 3, 7)], kind="0x02")  # an open and a closed line...
    wire[wire.index("SURF 0x02", wire.index("SURF 0x02") + 1)] = "SURF 0x31"  # ...a smooth, two-sided one
    mixed = _ac_file(tmp_path / "mixed.ac", [_ac_object("a", (0, 0, 0), 0, QUADS), wire])
    mesh = load_mesh(mixed)
    assert mesh.faces.shape == (12, 3) and mesh.area == pytest.approx(6.0)
    lines = _ac_file(tmp_path / "wire.ac", [wire])
    with pytest.raises(MeshLoadError, match=r"wire\.ac: .*no faces: its surfaces are lines only"):
        load_mesh(lines)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_a_reader_that_hangs_is_given_up(tmp_path):
    fifo = tmp_path / "stuck.ac"
    os.mkfifo(fifo)  # the child blocks opening it: no writer ever comes
    with pytest.raises(ValueError, match=r"stuck\.ac: .*did not finish within 2 s"):
        assimp_reader.read_scene(fifo, timeout=2)



@pytest.mark.skipif(not sys.platform.startswith("linux") or not hasattr(os, "mkfifo"), reason="Linux: PR_SET_PDEATHSIG")
def test_the_reader_ends_with_the_process_that_started_it(tmp_path):
    # a worker stopped by Ctrl-C or killed must not leave its reader behind (up to 600 s on a hang)
    fifo = tmp_path / "stuck.ac"
    os.mkfifo(fifo)
    script = f"from onet.geometry.assimp_reader import read_scene; read_scene({str(fifo)!r}, timeout=120)"
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    parent = subprocess.Popen([sys.executable, "-c", script], env=env)
    children, deadline = [], time.time() + 60
    while time.time() < deadline and not children:
        children = [int(pid) for task in Path(f"/proc/{parent.pid}/task").iterdir()
                    for pid in (task / "children").read_text().split()]
        time.sleep(0.05)
    assert children, "the reader starts"
    parent.kill()
    parent.wait()
    def alive(pid):  # a zombie waiting for init to reap it counts as ended
        try:
            return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return False

    deadline = time.time() + 10
    while time.time() < deadline and alive(children[0]):
        time.sleep(0.05)
    assert not alive(children[0])

CRASHING = Path("/usr/share/assimp/models/OpenGEX/camera.ogex")  # Debian's assimp-testmodels


@pytest.mark.skipif(not CRASHING.is_file(), reason="needs Debian's assimp-testmodels")
def test_a_crash_in_assimp_fails_the_file_not_the_process():
    with pytest.raises(MeshLoadError, match=r"camera\.ogex: unreadable mesh file \(assimp crashed on it: SIGSEGV"):
        load_mesh(CRASHING)


def test_preprocess_reads_assimp_formats_beside_the_others(tmp_path):
    src = tmp_path / "models" / "boxes"
    src.mkdir(parents=True)
    _ac_file(src / "cube.ac", [_ac_object("a", (0, 0, 0), 0, QUADS)])
    (src / "bad.fbx").write_text("Kaydara FBX Binary, cut short")
    summary = preprocess_dataset(tmp_path / "models", tmp_path / "out", progress=False, workers=1,
                                 options=PreprocessOptions(n_points=2000, n_surface=500, voxel_resolution=16,
                                                           n_views=2, img_size=24, watertight_resolution=32))
    assert summary.n_ok == 1 and summary.n_failed == 1
    (item, reason), = summary.failures
    assert item.model_id == "bad" and "bad.fbx: unreadable mesh file" in reason
    assert (tmp_path / "out" / "boxes" / "cube" / "points.npz").is_file()


def test_formats_and_advice():
    assert set(ASSIMP_EXTENSIONS) <= set(MESH_EXTENSIONS)
    assert not {".obj", ".ply", ".dae"} & set(ASSIMP_EXTENSIONS)  # those stay with trimesh / onet's readers
    assert unread_advice({".usdz"}).startswith("convert models to one of: obj, off, ply")
    advice = unread_advice({".zip", ".step"}).split("; ")
    assert advice[0] == "unpack the archives (.zip) into the folder first" and advice[1].startswith("convert models")

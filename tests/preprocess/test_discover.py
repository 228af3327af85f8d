import pytest
import trimesh

from onet.preprocess.discover import InputItem, describe_unread, find_inputs, scan_inputs
from onet.preprocess.pipeline import PreprocessOptions, preprocess_dataset


def test_find_inputs_shapenet_v1_v2(tmp_path):
    _touch_mesh(tmp_path / "03001627" / "b" / "model.obj")
    _touch_mesh(tmp_path / "03001627" / "a" / "model.obj")
    _touch_mesh(tmp_path / "02691156" / "z" / "models" / "model_normalized.obj")
    # a stray mesh inside a recognised model folder is not a model of its own
    _touch_mesh(tmp_path / "03001627" / "a" / "extra.obj")
    items = find_inputs(tmp_path)
    assert [(i.category, i.model_id) for i in items] == [("02691156", "z"), ("03001627", "a"), ("03001627", "b")]
    assert items[0].path == tmp_path / "02691156" / "z" / "models" / "model_normalized.obj"
    assert all(isinstance(i, InputItem) for i in items)


def test_find_inputs_plain_folder(tmp_path):
    root = tmp_path / "mine"
    _touch_mesh(root / "chairs" / "c1.ply")
    _touch_mesh(root / "chairs" / "sub" / "c2.stl")
    _touch_mesh(root / "lamps" / "l1.glb")
    _touch_mesh(root / "loose.off")
    _touch_mesh(root / "chairs" / "c1.obj")  # same stem, other format
    (root / "notes.txt").write_text("not a mesh")
    items = find_inputs(root)
    keys = [(i.category, i.model_id) for i in items]
    assert keys == sorted(keys)
    assert set(keys) == {("chairs", "c1"), ("chairs", "c1_ply"), ("chairs", "sub_c2"), ("lamps", "l1"), ("mine", "loose")}
    assert find_inputs(root) == items  # deterministic


def test_find_inputs_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        find_inputs(tmp_path / "absent")


def test_model_files_onet_does_not_read_are_counted_and_reported(tmp_path):
    root = tmp_path / "mine"
    _touch_mesh(root / "chairs" / "c1.obj")
    for name in ("c2.usdz", "c3.USDZ", "sub/c4.step", ".hidden.usdz"):
        (root / "chairs" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "chairs" / name).write_text("not read")
    (root / "chairs" / "wood.png").write_bytes(b"\x89PNG")  # a texture, not a model
    (root / "chairs" / "c1.mtl").write_text("newmtl a")
    items, counts = scan_inputs(root)
    assert items == find_inputs(root) and [i.model_id for i in items] == ["c1"]
    assert counts == {".usdz": 2, ".step": 1}
    assert describe_unread(counts) == "2 .usdz, 1 .step files"
    assert describe_unread(scan_inputs(tmp_path / "mine" / "chairs" / "sub")[1]) == "1 .step file"

    # a folder of them alone: the error says what is there and what to do
    only = tmp_path / "only"
    (only / "cars").mkdir(parents=True)
    (only / "cars" / "a.step").write_text("ISO-10303-21;")
    with pytest.raises(FileNotFoundError, match=r"no mesh files found .*1 \.step file, which onet does not read"):
        preprocess_dataset(only, tmp_path / "out0", options=PreprocessOptions(), progress=False)
    # models as downloaded, in archives: counted, and the advice says to unpack them
    zips = tmp_path / "zips"
    zips.mkdir()
    for name in ("chair.zip", "sofa.ZIP", "table.sh3f"):
        (zips / name).write_bytes(b"PK\x03\x04")
    with pytest.raises(FileNotFoundError, match=r"it holds 2 \.zip, 1 \.sh3f files, which onet does not read: "
                                                r"unpack the archives \(\.sh3f, \.zip\) into the folder first$"):
        preprocess_dataset(zips, tmp_path / "out1", options=PreprocessOptions(), progress=False)


def _touch_mesh(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    trimesh.creation.box().export(path)

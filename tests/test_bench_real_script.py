"""scripts/bench_real.py: the mesh reader, the class mapping and the tables, on hand-made data.

The benchmark itself (package download, preprocessing, 30-minute runs) runs only by hand.
"""

import struct

import numpy as np
import pytest
from script_loader import load_script


def _load():
    return load_script("bench_real")


def _pmd(vertices, faces, *, version=4, n_uv=2) -> bytes:
    """A PMD file written field by field, with UV sets and bone weights to skip."""
    body = struct.pack("<I", len(vertices)) + (struct.pack("<I", n_uv) if version >= 4 else b"")
    uv = n_uv if version >= 4 else 1
    for i, v in enumerate(vertices):
        body += struct.pack("<3f", *v) + struct.pack("<3f", 0, 1, 0) + struct.pack(f"<{2 * uv}f", *([0.5 * i] * 2 * uv))
        body += bytes([0xFF] * 4) + struct.pack("<4f", 1, 0, 0, 0)
    body += struct.pack("<I", len(faces)) + b"".join(struct.pack("<3H", *f) for f in faces)
    body += struct.pack("<II", 0, 0)  # no bones, no prop points
    return b"PSMD" + struct.pack("<II", version, len(body)) + body


@pytest.mark.parametrize("version,n_uv", [(4, 1), (4, 2), (3, 1)])
def test_read_pmd_returns_positions_and_faces(version, n_uv):
    bench = _load()
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 2, 0], [0, 0, 3]], np.float32)
    f = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])
    rv, rf = bench.read_pmd(_pmd(v, f, version=version, n_uv=n_uv))
    np.testing.assert_array_equal(rv, v)
    np.testing.assert_array_equal(rf, f)


def test_read_pmd_rejects_other_files():
    bench = _load()
    with pytest.raises(ValueError):
        bench.read_pmd(b"glTF" + bytes(40))
    with pytest.raises(ValueError):
        bench.read_pmd(_pmd(np.zeros((3, 3), np.float32), [[0, 1, 5]]))


def test_classes_take_whole_objects_and_leave_pieces_out():
    bench = _load()
    assert bench.classify("art/meshes/props/helmet/celt_agris.dae.cached.pmd") == "helmet"
    assert bench.classify("art/meshes/structural/rome_ship_trireme.dae.cached.pmd") == "ship"
    assert bench.classify("art/meshes/structural/ptol_ship_trireme_sails.dae.cached.pmd") is None
    assert bench.classify("art/meshes/structural/brit_house_01.dae.cached.pmd") == "house"
    assert bench.classify("art/meshes/structural/rome_tower_wood.dae.cached.pmd") == "tower"
    assert bench.classify("art/meshes/structural/ptol_tower_bolt_roof.dae.cached.pmd") is None
    assert bench.classify("art/meshes/gaia/geo_desert_01.dae.cached.pmd") == "rock"
    assert bench.classify("art/meshes/gaia/geo_waterfall_single.dae.cached.pmd") is None
    assert bench.classify("art/meshes/gaia/oak1.dae.cached.pmd") is None


def test_the_held_out_thin_classes_share_no_object_with_the_benchmark():
    bench = _load()
    thin = bench.THIN_CLASSES
    assert bench.classify("art/meshes/props/shield/round_m_f.dae.cached.pmd", thin) == "shield"
    assert bench.classify("art/meshes/props/shield/props/boss_r.dae.cached.pmd", thin) is None  # a piece
    assert bench.classify("art/meshes/props/statue_aphrodite_small.dae.cached.pmd", thin) == "statue"
    assert bench.classify("art/meshes/structural/isis_statue_pedestal.dae.cached.pmd", thin) is None
    assert bench.classify("art/meshes/structural/rome_ballista.dae.cached.pmd", thin) == "vehicle"
    assert bench.classify("art/meshes/structural/kush_chariot.dae.cached.pmd", thin) == "vehicle"
    assert bench.classify("art/meshes/props/brit_workshop_chariot_prop_wheel.dae.cached.pmd", thin) is None
    # siege towers are the benchmark's towers: tuned on, so not held out
    tower = "art/meshes/structural/han_siege_tower.dae.cached.pmd"
    assert bench.classify(tower) == "tower" and bench.classify(tower, thin) is None
    assert bench.classify("art/meshes/props/helmet/celt_agris.dae.cached.pmd", thin) is None


def test_table_has_a_row_per_class_and_the_mean():
    bench = _load()

    def result(iou):
        classes = [{"category": c, "count": 3, "iou": iou, "chamfer_l1": 0.01, "normal_consistency": 0.8,
                    "fscore@0.01": 0.5} for c in ("house", "ship")]
        return {"classes": classes, "mean_over_classes": {**classes[0], "category": "mean"}}

    text = bench.table({"input": {**result(None)}, "pc_cpu": result(0.61)})
    lines = text.splitlines()
    assert len(lines) == 2 + 3 and lines[-1].startswith("| **mean over classes** | 6 |")
    assert "| 0.610 | 0.100 | 0.800 | 0.500 |" in lines[2] and "| – | 0.100 |" in lines[2]


def test_onet_runner_returns_the_child_cpu_seconds_and_names_the_log(tmp_path):
    import argparse

    bench = _load()
    args = argparse.Namespace(threads=1)
    log = tmp_path / "run" / "log.txt"
    cpu = bench.onet(["--help"], args, log_to=log)
    assert 0.0 < cpu < 60.0
    assert "usage" in log.read_text()
    with pytest.raises(SystemExit, match="log.txt"):
        bench.onet(["no-such-verb"], args, log_to=log)


def test_onet_runner_launches_processes_with_torchrun_and_counts_all_their_cpu(tmp_path):
    import argparse

    bench = _load()
    one, two = tmp_path / "one.txt", tmp_path / "two.txt"
    cpu_one = bench.onet(["--help"], argparse.Namespace(threads=2), log_to=one)
    cpu_two = bench.onet(["--help"], argparse.Namespace(threads=2), log_to=two, procs=2)
    # both workers ran (each prints the usage) and wait4 counted them with the launcher
    assert one.read_text().count("usage: onet") == 1 and two.read_text().count("usage: onet") == 2
    assert cpu_two > 1.5 * cpu_one


def test_config_threshold_reads_the_config_and_its_overrides():
    bench = _load()
    # pointcloud_cpu.yaml sets 0.35; pointcloud.yaml inherits the thesis's 0.2 (configs/default.yaml)
    assert bench._config_threshold("configs/pointcloud_cpu.yaml", []) == pytest.approx(0.35)
    assert bench._config_threshold("configs/pointcloud.yaml", []) == pytest.approx(0.2)
    assert bench._config_threshold("configs/pointcloud_cpu.yaml", ["test.threshold=0.3"]) == pytest.approx(0.3)


def test_every_run_is_a_config_that_loads_and_builds():
    # a run's overrides must stay valid as the configs change under them (e.g. a plane
    # resolution the U-Net's levels do not divide)
    bench = _load()
    from onet.config import load_config
    from onet.models import build_model, count_parameters
    sizes = {}
    for name, (config, overrides) in bench.RUNS.items():
        cfg = load_config(bench.REPO / config, overrides)
        sizes[name] = count_parameters(build_model(cfg["model"], pretrained=False))
    # the comparison runs differ from the shipped config where they say they do
    assert sizes["pc_cpu_u16"] == sizes["pc_cpu"] != sizes["pc_cpu_u8l4"]
    assert sizes["pc_cpu_u8"] < sizes["pc_cpu_u16"] < sizes["pc_cpu_u32"]
    assert sizes["pc_cpu_u8l4"] < sizes["pc_cpu_u12l4"] < sizes["pc_cpu_u32"]
    assert sizes["pc_cpu_p96"] == sizes["pc_cpu_p128"] == sizes["pc_cpu_u8l4"]
    assert sizes["pc_cpu_p32"] == sizes["pc_cpu_u16"]  # the planes' size is not a weight


def test_step_times_table_and_rejects_image_runs():
    bench = _load()
    rows = bench.step_times(["pc_cpu_u8", "pc_cpu"], batch=2, rounds=1, steps=1)
    assert [r["run"] for r in rows] == ["pc_cpu_u8", "pc_cpu"]
    assert rows[0]["ratio"] == 1.0 and all(r["cpu_s"] > 0 for r in rows)
    assert rows[0]["parameters"] < rows[1]["parameters"]  # 8-32 channels against 16-64
    table = bench.step_table(rows).splitlines()
    assert table[0].startswith("| run |") and table[2].startswith("| pc_cpu_u8 |") and len(table) == 4
    with pytest.raises(SystemExit, match="img_cpu"):
        bench.step_times(["img_cpu"], batch=1, rounds=1, steps=1)

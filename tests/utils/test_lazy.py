"""onet.utils.lazy: a module named through lazy_import is imported on first attribute use."""

import subprocess
import sys

from onet.utils.lazy import lazy_import


def test_attribute_use_imports_the_module():
    json = lazy_import("json")
    assert json.dumps({"a": 1}) == '{"a": 1}'
    assert json.loads is __import__("json").loads


def test_training_and_generation_do_not_import_trimesh_or_scipy_until_used():
    code = ("import sys, onet.training, onet.generation, onet.evaluation; "
            "print(sorted(m for m in ('trimesh', 'scipy.special') if m in sys.modules)); "
            "from onet.geometry.normalize import trimesh; trimesh.Trimesh; print('trimesh' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[]", "True"]

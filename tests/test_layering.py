"""The house stays straight: every import arrow in onet/ points down (DESIGN §2).

Floors, top to bottom:

    cli                     onet/cli.py, onet/__main__.py   argument parsing only
    demo                    onet/demo.py                    runs the stages end to end
    stages                  every other subpackage          preprocess, training, generation, evaluation, gan, ...
    models, data, config    networks; datasets and file formats; YAML configs
    geometry                pure functions on arrays
    utils, onet/__init__    atomic io, errors, device, checkpoints

A module may import from its own package and from any lower floor. A stage
(and the demo and CLI above it) reaches another stage only through the names
that stage's `__init__.py` lists in `__all__`. Same-floor imports between
different packages must be listed in SAME_FLOOR_ALLOWED.
There is no import cycle between modules. Imports inside functions count.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "onet"

FLOORS = {"cli": 5, "__main__": 5, "demo": 4, "models": 2, "data": 2, "config": 2, "geometry": 1,
          "utils": 0, "__init__": 0}
STAGE_FLOOR = 3  # any other subpackage of onet is a stage
# (importer package, imported package) pairs allowed on the same floor
SAME_FLOOR_ALLOWED = {("data", "config"), ("config", "models"), ("__main__", "cli")}


def floor_of(component: str) -> int:
    return FLOORS.get(component, STAGE_FLOOR)


def read_package(root: Path = PACKAGE_ROOT) -> dict[str, str]:
    """{'onet.a.b': source} for every module under `root` ('onet.a' for a/__init__.py)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = ("onet",) + path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 2:
            parts = parts[:-1]
        modules[".".join(parts)] = path.read_text(encoding="utf-8")
    return modules


def _component(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_package(module: str, modules: dict[str, str]) -> bool:
    return any(m.startswith(module + ".") for m in modules)


def _imports(module: str, source: str, modules: dict[str, str]):
    """Yield (target module, names imported from it or None, line) for each onet import in `source`."""
    for node in _import_nodes(source):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "onet" or alias.name.startswith("onet."):
                    yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import: resolve against this module's package
                package = module.split(".") if _is_package(module, modules) else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            if base != "onet" and not base.startswith("onet."):
                continue
            # a name the package exports in __all__ is that object (e.g. the function
            # onet.generation.generate), even where a submodule could have the same name
            public = _public_names(base, modules) if base in modules else set()
            submodules = [a.name for a in node.names if f"{base}.{a.name}" in modules and a.name not in public]
            for name in submodules:
                yield f"{base}.{name}", None, node.lineno
            names = [a.name for a in node.names if a.name not in submodules]
            if names:
                yield base, names, node.lineno


@functools.lru_cache(maxsize=None)
def _import_nodes(source: str) -> tuple[ast.AST, ...]:
    """The import statements of a module source, anywhere in it (parsed once per source)."""
    return tuple(n for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.Import, ast.ImportFrom)))


def _public_names(stage_package: str, modules: dict[str, str]) -> set[str]:
    return set(_all_of(modules.get(stage_package, "")))


@functools.lru_cache(maxsize=None)
def _all_of(source: str) -> tuple[str, ...]:
    """The names in a module source's __all__ (parsed once per source: the checker asks per import)."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    return ()


def check_layering(modules: dict[str, str]) -> list[str]:
    """Every violation of the floor rules and every import cycle, as readable lines."""
    problems = []
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, source in modules.items():
        src = _component(module)
        for target, names, line in _imports(module, source, modules):
            if target == "onet":
                dst = "__init__"
            else:
                dst = _component(target)
            if target in modules:
                graph[module].add(target)
            where = f"{module} (line {line}) imports {target}" + (f" ({', '.join(names)})" if names else "")
            if dst == src:
                continue
            f_src, f_dst = floor_of(src), floor_of(dst)
            if f_dst > f_src:
                problems.append(f"upward import: {where}")
            elif f_dst == STAGE_FLOOR and f_src >= STAGE_FLOOR:
                stage_package = f"onet.{dst}"
                public = _public_names(stage_package, modules)
                if target != stage_package or names is None or not set(names) <= public:
                    problems.append(f"cross-stage import outside {stage_package}'s public entry points "
                                    f"{sorted(public)}: {where}")
            elif f_dst == f_src and (src, dst) not in SAME_FLOOR_ALLOWED:
                problems.append(f"same-floor import not in SAME_FLOOR_ALLOWED: {where}")
    problems += [f"import cycle: {' -> '.join(cycle)}" for cycle in _cycles(graph)]
    return problems


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (or a self-loop)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                found.append(sorted(component) + [sorted(component)[0]])

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_upward_cross_stage_or_cyclic_import():
    problems = check_layering(read_package())
    assert problems == [], "\n".join(problems)


def test_every_stage_declares_its_public_entry_points():
    modules = read_package()
    stages = {_component(m) for m in modules if floor_of(_component(m)) == STAGE_FLOOR}
    assert {"preprocess", "training", "generation", "evaluation"} <= stages
    for stage in stages:
        package = f"onet.{stage}"
        assert package in modules, f"{stage} must be a package"
        assert _public_names(package, modules), f"{package}/__init__.py must list its entry points in __all__"
        assert ast.get_docstring(ast.parse(modules[package])), f"{package}/__init__.py must say what it offers"


# The checker itself must catch what it exists to catch.

@pytest.mark.parametrize("module, source, expected", [
    ("onet.geometry.fake", "from onet.training import train\n", "upward import"),
    ("onet.utils.fake", "import onet.geometry.grid\n", "upward import"),
    ("onet.data.fake", "def f():\n    from onet.evaluation.metrics import iou\n", "upward import"),
    ("onet.models.fake", "from onet.cli import main\n", "upward import"),
    ("onet.generation.fake", "from onet.evaluation.metrics import evaluate_mesh\n", "cross-stage import"),
    ("onet.evaluation.fake", "from onet.generation import _remove_stale_temporaries\n", "cross-stage import"),
    ("onet.demo", "from onet.generation.run import generate\n", "cross-stage import"),
    ("onet.models.fake", "from onet.data.dataset import ShapeDataset\n", "same-floor import"),
])
def test_checker_flags_bad_imports(module, source, expected):
    modules = read_package()
    modules[module] = source
    problems = check_layering(modules)
    assert any(p.startswith(expected) and module in p for p in problems), problems


def test_checker_allows_downward_and_public_imports():
    modules = read_package()
    modules["onet.evaluation.fake"] = ("from onet.generation import generate\nfrom onet.geometry.iou import iou\n"
                                       "from onet.utils.io import write_text_atomic\nfrom . import metrics\n")
    assert check_layering(modules) == []


def test_checker_finds_cycles():
    modules = read_package()
    modules["onet.geometry.cycle_a"] = "from onet.geometry import cycle_b\n"
    modules["onet.geometry.cycle_b"] = "import onet.geometry.cycle_a\n"
    problems = check_layering(modules)
    assert any(p.startswith("import cycle") and "onet.geometry.cycle_a" in p for p in problems), problems

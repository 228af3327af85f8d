"""Modules imported on first use.

trimesh (with what it pulls in) costs 1-1.5 s of start-up on the development CPUs, and most
onet processes (`onet train` on a preprocessed dataset, `onet eval --sweep`, every torchrun
rank) never touch a mesh object; the geometry modules name it through `lazy_import` so a
process pays for it only when it first uses it.
"""

from __future__ import annotations

import importlib
import types


class _LazyModule(types.ModuleType):
    """Stands for a module until an attribute is asked for, then imports it and is it from then on."""

    def __getattr__(self, attr: str):
        module = importlib.import_module(self.__name__)
        # later lookups find the real module's names in this object's own dict
        self.__dict__.update({k: v for k, v in vars(module).items() if k not in ("__name__", "__spec__")})
        return getattr(module, attr)


def lazy_import(name: str) -> types.ModuleType:
    """`name`'s module, imported when one of its attributes is first used (not registered in
    sys.modules: a plain `import name` elsewhere still gets the real module)."""
    return _LazyModule(name)

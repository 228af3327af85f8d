"""Output stamps: every output folder records the options that made it.

A batch verb that resumes (skips finished items) must not mix outputs made
with different options. `claim_folder` is the one place that decides: the
folder's `stamp.yaml` holds the options of the run that made it; a rerun with
the same options resumes, a rerun with other options is refused (exit 2)
naming each differing option, and `--overwrite` clears the old outputs first
and then records the new options, so even a killed overwrite never leaves
old outputs under a new stamp.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import yaml

from onet.utils.errors import UsageError
from onet.utils.io import write_text_atomic

STAMP_NAME = "stamp.yaml"


class OptionsMismatch(UsageError):
    """The output folder was made with other options; the message names them and suggests --overwrite."""

    def __init__(self, message: str, differences: dict[str, tuple[Any, Any]]):
        super().__init__(message)
        self.differences = differences


def _plain(value: Any) -> Any:
    """Options as YAML reads them back (tuples -> lists, Paths -> str), so comparisons are exact."""
    return yaml.safe_load(yaml.safe_dump(value, sort_keys=True))


def read_stamp(folder: str | Path) -> dict | None:
    """{'verb': ..., 'options': {...}} of a folder, or None when it has no (readable) stamp."""
    path = Path(folder) / STAMP_NAME
    if not path.is_file():
        return None
    try:
        stamp = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    return stamp if isinstance(stamp, dict) and isinstance(stamp.get("options"), dict) else None


def differences(old: dict, new: dict, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """{dotted option: (old value, new value)} for every option that differs (missing -> None)."""
    out = {}
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.update(differences(a, b, f"{prefix}{key}."))
        elif a != b:
            out[f"{prefix}{key}"] = (a, b)
    return out


def check_stamp(folder: str | Path, verb: str, options: dict, *, what: str = "outputs",
                ignore: tuple[str, ...] = ()) -> bool:
    """Raise OptionsMismatch when `folder` was made with other options; True when its stamp matches.

    ignore: dotted options recorded for people but not compared (a path whose file another
    option identifies by its content)."""
    folder = Path(folder)
    old = read_stamp(folder)
    if old is None:
        return False
    diff = {k: v for k, v in differences(old["options"], _plain(options)).items() if k not in ignore}
    if not diff:
        return True
    listed = "; ".join(f"{k}: {_show(a)} -> {_show(b)}" for k, (a, b) in diff.items())
    raise OptionsMismatch(
        f"{folder} holds {what} of `onet {old.get('verb', verb)}` made with other options ({listed}); "
        f"rerun with --overwrite to redo them with the new options, or choose another output folder", diff)


def write_stamp(folder: str | Path, verb: str, options: dict) -> None:
    write_text_atomic(Path(folder) / STAMP_NAME, yaml.safe_dump({"verb": verb, "options": _plain(options)},
                                                                 sort_keys=False))


def claim_folder(folder: str | Path, verb: str, options: dict, *, overwrite: bool = False,
                 clear: Callable[[], None] | None = None, what: str = "outputs") -> bool:
    """Make `folder` the output of `onet VERB` with `options`; returns True when old outputs were cleared.

    No stamp yet: the options are recorded. Same options: nothing to do (the
    run resumes). Other options: OptionsMismatch naming them. `overwrite`:
    `clear()` removes the old outputs (whatever options made them: the user
    asked for the work to be redone), then the new stamp is written.
    Processes sharing a folder (torchrun ranks) call check_stamp on every
    rank first, then one of them clears and writes.
    """
    if not overwrite and check_stamp(folder, verb, options, what=what):
        return False
    if overwrite and clear is not None:
        clear()
    write_stamp(folder, verb, options)
    return overwrite and clear is not None


def _show(value: Any) -> str:
    return "unset" if value is None else repr(value)

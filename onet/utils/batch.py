"""One per-item runner for the batch verbs (`onet preprocess`, `generate`, `eval`).

The rule, stated once: any exception raised while processing one item (an
object, an input file, a mesh pair) is caught, named with the item and its
file, recorded, and the batch goes on; the run exits with code 1 when at
least one item failed, 0 otherwise. Only faults of the run itself stop it at
once: an output that cannot be written (`OutputWriteError` from
`onet.utils.io`: full disk, read-only or missing folder) and a full disk or
read-only file system met anywhere, since every following item would fail
the same way, and a usage or config error (`UsageError`, `ConfigError`:
the settings, not the item, are wrong). Ctrl-C (KeyboardInterrupt) is never caught.
"""

from __future__ import annotations

import csv
import errno
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from onet.utils.errors import ConfigError, UsageError
from onet.utils.io import OutputWriteError, write_text_atomic

# errno values that describe the machine, not the item: the next item would meet them too
_RUN_ERRNOS = {errno.ENOSPC, errno.EROFS, getattr(errno, "EDQUOT", errno.ENOSPC)}

BATCH_RULE = ("A bad item (file, object) is reported by name and skipped; the others finish. "
              "Exit code: 0 when every item worked, 1 when any item failed (listed in {where}), "
              "2 for a usage or config error.")


def stops_the_run(exc: BaseException) -> bool:
    """True for faults of the run itself (unwritable output, full disk, wrong settings), which no item can get past."""
    if isinstance(exc, (OutputWriteError, UsageError, ConfigError)):
        return True
    return isinstance(exc, OSError) and exc.errno in _RUN_ERRNOS


def describe(exc: BaseException) -> str:
    """One line for an item's failure: the message, with the exception type when the message alone is vague."""
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    if not text:
        return name
    # our own errors and OSErrors name the file and problem already; others (KeyError: 'x') need the type
    return text if isinstance(exc, (OSError, ValueError)) and name.endswith("Error") else f"{name}: {text}"


@dataclass
class Outcome:
    """What one item's function gave: its value, or the reason it failed."""

    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def attempt(fn: Callable[..., Any], *args, **kwargs) -> Outcome:
    """Call fn; any exception of the item becomes Outcome(error=...). Faults of the run propagate.

    A plain function, so worker processes (preprocess --workers) use the same rule.
    """
    try:
        return Outcome(fn(*args, **kwargs))
    except Exception as exc:
        if stops_the_run(exc):
            raise
        return Outcome(error=describe(exc))


@dataclass
class Problem:
    name: str    # the item: an output name, category/model_id, ...
    path: str    # the file or folder it concerns
    reason: str


@dataclass
class ItemRunner:
    """Collects per-item failures and warnings of one batch run.

    runner.run(name, path, fn, *args) -> Outcome; runner.fail / runner.warn record
    problems found without an exception; runner.write(folder) leaves failures.csv
    and warnings.csv there (name, path, reason) or removes stale ones;
    runner.exit_code is 1 when an item failed.
    """

    log: Callable[[str], None] = print
    failures: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def run(self, name: str, path: str | Path, fn: Callable[..., Any], *args, **kwargs) -> Outcome:
        outcome = attempt(fn, *args, **kwargs)
        if not outcome.ok:
            self.fail(name, path, outcome.error)
        return outcome

    def fail(self, name: str, path: str | Path, reason: str) -> None:
        self.failures.append(Problem(name, str(path), reason))
        self.log(f"skipped {name}: {reason}")

    def warn(self, name: str, path: str | Path, reason: str) -> None:
        self.warnings.append(Problem(name, str(path), reason))
        self.log(f"warning: {name}: {reason}")

    @property
    def failed_names(self) -> set[str]:
        return {p.name for p in self.failures}

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0

    def write(self, folder: str | Path) -> None:
        """failures.csv / warnings.csv in `folder`; a file from an earlier run is removed when nothing is left."""
        folder = Path(folder)
        for name, problems in (("failures.csv", self.failures), ("warnings.csv", self.warnings)):
            if problems:
                write_problems_csv(folder / name, problems)
            else:  # every earlier problem was retried and worked: an old list would mislead
                (folder / name).unlink(missing_ok=True)


def write_problems_csv(path: Path, problems: list[Problem]) -> None:
    buf = io.StringIO()  # csv quotes names and reasons holding commas or quotes
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("name", "path", "reason"))
    writer.writerows((p.name, p.path, p.reason) for p in problems)
    write_text_atomic(path, buf.getvalue())

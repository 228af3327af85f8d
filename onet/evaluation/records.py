"""Per-object evaluation records: what sharded evaluations write and the final `onet eval` merges.

A process evaluating a share of the objects (`onet eval --shard I/N`, or one
rank under torchrun) appends one JSON line per object to
<out_dir>/objects/<mode>.shard<I>of<N>.jsonl, complete metrics included. Any
later evaluation of the same folder reuses a record instead of scoring the
object again when the record's settings (mode, prediction folder, sample
count, seed, thresholds) and the stamp of the files it read (size and
modification time of the prediction and the reference files) are unchanged;
so the final unsharded `onet eval` merges what the shards wrote into the one
table, scores whatever no shard finished, and gives the numbers one process
gives (floats are stored with full precision).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

from onet.evaluation.metrics import MeshMetrics
from onet.evaluation.tables import ObjectRow
from onet.utils.ranks import Share

RECORDS_DIR = "objects"


def file_stamp(paths: Iterable[Path]) -> list:
    """[[name, size, mtime_ns] or [name, None, None] per file]: changes when any file does."""
    out = []
    for p in paths:
        try:
            st = os.stat(p)
            out.append([os.path.abspath(p), st.st_size, st.st_mtime_ns])
        except OSError:
            out.append([os.path.abspath(p), None, None])
    return out


def _row_to_json(row: ObjectRow) -> dict:
    m = row.metrics
    metrics = {k: (None if v is None else float(v)) for k, v in (
        ("iou", m.iou), ("accuracy", m.accuracy), ("completeness", m.completeness), ("chamfer_l1", m.chamfer_l1),
        ("chamfer_l2", m.chamfer_l2), ("normal_consistency", m.normal_consistency))}
    metrics["fscore"] = [[float(t), float(v)] for t, v in m.fscore.items()]  # JSON keys would be strings
    metrics["empty"] = bool(m.empty)
    return {"category": row.category, "model_id": row.model_id, "status": row.status, "reason": row.reason,
            "metrics": metrics}


def _row_from_json(d: dict) -> ObjectRow:
    m = dict(d["metrics"])
    m["fscore"] = {float(t): float(v) for t, v in m["fscore"]}
    return ObjectRow(d["category"], d["model_id"], MeshMetrics(**m), d["status"], d["reason"])


class RecordStore:
    """The records under `folder` that match `settings`; `add` appends to this share's own file."""

    def __init__(self, folder: Path, mode: str, settings: dict, share: Share):
        self.folder, self.settings = Path(folder), json.loads(json.dumps(settings))  # as it reads back
        self.mode, self.path = mode, self.folder / f"{mode}.{share.suffix}.jsonl"
        self._rows: dict[tuple[str, str], tuple[list, ObjectRow]] = {}
        self.reload()

    def reload(self) -> None:
        """Read every share's records again (e.g. after worker processes appended theirs)."""
        self._rows.clear()
        for p in sorted(self.folder.glob(f"{self.mode}.shard*of*.jsonl")) if self.folder.is_dir() else []:
            for line in p.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                    if rec["settings"] != self.settings:
                        continue
                    row = _row_from_json(rec["row"])
                except (ValueError, KeyError, TypeError):  # a torn last line after a kill, or a foreign file
                    continue
                self._rows[(row.category, row.model_id)] = (rec["stamp"], row)

    def get(self, category: str, model_id: str, stamp: list) -> ObjectRow | None:
        """The recorded row when its files are unchanged, else None."""
        found = self._rows.get((category, model_id))
        if found is None or found[0] != json.loads(json.dumps(stamp)):
            return None
        return found[1]

    def add(self, row: ObjectRow, stamp: list) -> None:
        line = json.dumps({"settings": self.settings, "stamp": stamp, "row": _row_to_json(row)}) + "\n"
        self.folder.mkdir(parents=True, exist_ok=True)
        # one write on an O_APPEND descriptor: a kill leaves at most a torn last line, skipped on reading
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)

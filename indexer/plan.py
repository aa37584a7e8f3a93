"""Sync planning: compare a scan with the stored rows and say what needs reading."""

from __future__ import annotations

from dataclasses import dataclass, field

from .scan import ScannedFile, is_within
from .store import RowState, encode_path

__all__ = ["SyncPlan", "plan_sync", "stored_sizes", "TRANSIENT_ERRORS"]

# Failures worth retrying even when the file's size and mtime did not change.
TRANSIENT_ERRORS = frozenset({"vanished", "unreadable", "internal"})


@dataclass
class SyncPlan:
    unchanged: int = 0
    to_read: list[tuple[ScannedFile, RowState | None]] = field(default_factory=list)
    missing: dict[int, RowState] = field(default_factory=dict)  # stored rows no longer on disk


def plan_sync(scanned: list[ScannedFile], rows: dict[str, RowState], roots: list[str]) -> SyncPlan:
    """Files whose size and mtime match their row are unchanged; the rest must be read."""
    plan = SyncPlan()
    seen: set[str] = set()
    for f in scanned:
        key = encode_path(f.path)[0]
        seen.add(key)
        row = rows.get(key)
        if row is not None and _same_stat(row, f) and _settled(row):
            plan.unchanged += 1
        else:
            plan.to_read.append((f, row))
    for key, row in rows.items():
        if row.status == "quarantined":
            continue  # moved aside on purpose: the row waits for an undo
        if key not in seen and any(is_within(key, r) for r in roots):
            plan.missing[row.id] = row
    return plan


def stored_sizes(rows: dict[str, RowState]) -> set[int]:
    """The sizes of the stored files whose embedding can be reused: a file of another size
    cannot be a copy of one of them, so it certainly needs decoding."""
    return {r.size for r in rows.values() if r.status in ("ok", "quarantined")}


def _same_stat(row: RowState, f: ScannedFile) -> bool:
    return row.size == f.size and row.mtime_ns == f.mtime_ns


def _settled(row: RowState) -> bool:
    if row.status == "quarantined":
        return False  # its file is back: read it to bring the row back
    return row.status == "ok" or row.error not in TRANSIENT_ERRORS

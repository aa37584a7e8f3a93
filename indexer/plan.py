"""Sync planning: compare a scan with the stored rows and say what needs reading."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .extensions import has_video_extension
from .scan import ScannedFile, UnreadableFolder, is_within
from .store.store import NOT_UTF8_MARK, RowState, encode_path

__all__ = ["SyncPlan", "plan_sync", "stored_sizes", "TRANSIENT_ERRORS"]

# Failures worth retrying even when the file's size and mtime did not change.
TRANSIENT_ERRORS = frozenset({"vanished", "unreadable", "internal"})


@dataclass
class SyncPlan:
    unchanged: int = 0
    to_read: list[tuple[ScannedFile, RowState | None]] = field(default_factory=list)  # images
    videos: list[tuple[ScannedFile, RowState | None]] = field(default_factory=list)  # videos to read
    missing: dict[int, RowState] = field(default_factory=dict)  # stored rows no longer on disk
    # stored rows under a folder the scan could not list, to be marked failed `unreadable`
    unlisted: list[tuple[RowState, UnreadableFolder]] = field(default_factory=list)


def plan_sync(scanned: list[ScannedFile], rows: dict[str, RowState], roots: list[str],
              unreadable: Iterable[UnreadableFolder] = ()) -> SyncPlan:
    """Files whose size and mtime match their row, and that can still be read, are unchanged;
    the rest must be read (an unreadable one then fails `unreadable`, as in a fresh index)."""
    plan = SyncPlan()
    seen: set[str] = set()
    for f in scanned:
        key = encode_path(f.path)[0]
        seen.add(key)
        row = rows.get(key)
        if row is not None and _same_stat(row, f) and _settled(row) and f.readable:
            plan.unchanged += 1
        elif has_video_extension(f.path):
            plan.videos.append((f, row))
        else:
            plan.to_read.append((f, row))
    # A folder that cannot be listed (permissions, a failing disk) most often still holds its
    # files: deleting their rows would lose ids, embeddings and duplicate decisions over what is
    # usually passing. The rows stay, failed `unreadable` (out of search), and are read again,
    # like any transient failure, once the folder can be listed.
    unlisted = [(encode_path(u.path)[0].removesuffix(NOT_UTF8_MARK), u) for u in unreadable]
    for key, row in rows.items():
        if key in seen or row.status == "quarantined" or not any(is_within(key, r) for r in roots):
            continue  # quarantined: moved aside on purpose, the row waits for an undo
        folder = next((u for prefix, u in unlisted if is_within(key, prefix)), None)
        if folder is None:
            plan.missing[row.id] = row
        elif not (row.status == "failed" and row.error == "unreadable"):
            plan.unlisted.append((row, folder))
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

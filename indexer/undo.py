"""Undoing a cleanup, whichever kind it was: files moved into the quarantine
(indexer.store.quarantine), sidecars marked (indexer.sidecar_marks), or both at once (an apply
with --merge-metadata, whose marks manifest carries its quarantine manifest's stamp)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .sidecar_marks import WAIT_SECONDS, MarkReport, undo_marks, undoable_marks
from .store.quarantine import QuarantineReport, undo_quarantine
from .store.quarantine_moves import quarantine_dir
from .store.quarantine_repair import latest_of_ours
from .store.store import open_store

__all__ = ["UndoReport", "undo_cleanup"]


@dataclass
class UndoReport:
    moves: QuarantineReport | None = None  # files put back
    marks: MarkReport | None = None  # sidecars put back


def undo_cleanup(store_dir, manifest: str | Path | None = None, *, wait: float = WAIT_SECONDS) -> UndoReport:
    """Undo `manifest` (a quarantine's or a marks' manifest), default the store's latest cleanup."""
    store = open_store(store_dir)
    store.require()
    folder = quarantine_dir(store.dir)
    if manifest is None:
        moved = latest_of_ours(store, folder)
        marked = max(undoable_marks(folder), key=_stamp, default=None)
        if moved is None and marked is None:
            raise ConfigError(f"nothing to undo: no quarantine or marks manifest in {folder}")
        manifest = marked if moved is None or (marked is not None and _stamp(marked) > _stamp(moved)) else moved
    manifest = Path(manifest)
    if manifest.name.startswith("marks-"):
        return UndoReport(marks=undo_marks(store.dir, manifest, wait=wait))
    report = UndoReport(moves=undo_quarantine(store.dir, manifest, wait=wait))
    linked = manifest.with_name(f"marks-{_stamp(manifest)}.json")
    if linked in undoable_marks(folder):
        report.marks = undo_marks(store.dir, linked, wait=wait)
    return report


def _stamp(manifest: Path) -> str:
    """The time in a manifest's name (manifest-STAMP.json, marks-STAMP.json): they sort by it."""
    return manifest.stem.split("-", 1)[1]

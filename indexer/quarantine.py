"""Move duplicates aside, never delete: a manifest written before any file moves, the store
following the moves (quarantined rows leave search, keeping their embeddings), and an undo that
puts every file back byte for byte and brings its row back without re-embedding.

Order of an apply, each step safe to be interrupted: manifest (fsynced) -> rows marked
quarantined (one transaction) -> files moved -> rows of files that could not move marked back
-> manifest marked applied. A row whose file is still in place is revived by the next sync."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import ConfigError
from .faults import fault_point
from .lock import WriterLock
from .store import open_store
from .vectors import open_for_writing, sync_and_save

__all__ = ["Move", "QuarantineReport", "quarantine_files", "undo_quarantine", "latest_manifest",
           "quarantine_dir", "MANIFEST_GLOB"]

MANIFEST_GLOB = "manifest-*.json"
WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class Move:
    id: int
    source: str
    target: str
    size: int
    mtime_ns: int
    content_hash: str | None


@dataclass
class QuarantineReport:
    manifest: Path | None
    moved: list[Move] = field(default_factory=list)  # for an undo: the files put back
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)

    @property
    def bytes(self) -> int:
        return sum(m.size for m in self.moved)


def quarantine_dir(store_dir) -> Path:
    """Where a store's quarantined files and manifests go (hidden: scans skip it)."""
    return open_store(store_dir).dir / ".quarantine"


def quarantine_files(store_dir, ids, *, folder: Path | None = None,
                     wait: float = WAIT_SECONDS) -> QuarantineReport:
    """Move the files of these indexed images into the quarantine folder (mirroring their
    absolute paths) and take them out of the index. Files changed since they were indexed,
    or gone, are skipped and said."""
    store = open_store(store_dir, read_only=False)
    store.require()
    folder = Path(folder) if folder else quarantine_dir(store.dir)
    with WriterLock(store.dir / "writer.lock", wait=wait):
        vectors = open_for_writing(store, store.manifest())
        rows = store.records_by_id("path, size, mtime_ns, content_hash", sorted({int(i) for i in ids}))
        report = QuarantineReport(None)
        moves = []
        for row_id in sorted({int(i) for i in ids}):
            row = rows.get(row_id)
            why = _unmovable(row, folder)
            if why:
                report.skipped.append((row["path"] if row else f"id {row_id}", why))
                continue
            target = str(folder / Path(row["path"]).relative_to(Path(row["path"]).anchor))
            moves.append(Move(row_id, row["path"], target, row["size"], row["mtime_ns"], row["content_hash"]))
        if not moves:
            return report
        folder.mkdir(parents=True, exist_ok=True)
        report.manifest = _write_manifest(folder, moves, "applying")
        with store.transaction() as tx:
            tx.set_status([m.id for m in moves], "quarantined")
        failed = []
        for move in moves:
            fault_point("quarantine_move")
            why = _move(move.source, move.target)
            if why:
                failed.append(move.id)
                report.skipped.append((move.source, why))
            else:
                report.moved.append(move)
        if failed:
            with store.transaction() as tx:
                tx.set_status(failed, "ok")
        _write_manifest(folder, report.moved, "applied", report.manifest)
        sync_and_save(store, vectors)
    return report


def undo_quarantine(store_dir, manifest: Path | None = None, *, folder: Path | None = None,
                    wait: float = WAIT_SECONDS) -> QuarantineReport:
    """Put back every file of `manifest` (default: the latest one not undone) and bring its row
    back with the embedding it had. A file whose old place is taken again stays quarantined."""
    store = open_store(store_dir, read_only=False)
    store.require()
    folder = Path(folder) if folder else quarantine_dir(store.dir)
    manifest = Path(manifest) if manifest else latest_manifest(folder)
    if manifest is None or not manifest.is_file():
        raise ConfigError(f"nothing to undo: no quarantine manifest in {folder}")
    moves = [Move(**m) for m in json.loads(manifest.read_text())["moves"]]
    report = QuarantineReport(manifest)
    with WriterLock(store.dir / "writer.lock", wait=wait):
        vectors = open_for_writing(store, store.manifest())
        for move in moves:
            if os.path.lexists(move.target) and not os.path.lexists(move.source):
                why = _move(move.target, move.source)
            elif os.path.lexists(move.source) and not os.path.lexists(move.target):
                why = None  # already back (an apply interrupted before this file moved)
            else:
                why = "its old place is taken, or the quarantined copy is gone"
            if why:
                report.skipped.append((move.source, why))
            else:
                report.moved.append(move)
        if report.moved:
            quarantined = {r["id"] for r in store.records("id", "status = 'quarantined' AND embedding IS NOT NULL")}
            with store.transaction() as tx:
                tx.set_status([m.id for m in report.moved if m.id in quarantined], "ok")
        if not report.skipped:
            manifest.rename(manifest.with_suffix(".undone"))
        sync_and_save(store, vectors)
    return report


def latest_manifest(folder: Path) -> Path | None:
    manifests = sorted(Path(folder).glob(MANIFEST_GLOB)) if Path(folder).is_dir() else []
    return manifests[-1] if manifests else None


def _unmovable(row: dict | None, folder: Path) -> str | None:
    if row is None:
        return "not an indexed image (already quarantined, or removed)"
    try:
        stat = os.stat(row["path"])
    except OSError:
        return "file is gone"
    if stat.st_size != row["size"] or stat.st_mtime_ns != row["mtime_ns"]:
        return "file changed since it was indexed: run `vitsearch index` first"
    if Path(row["path"]).is_relative_to(folder):
        return "file is already inside the quarantine folder"
    return None


def _move(source: str, target: str) -> str | None:
    """Move one file without ever overwriting; a move across file systems copies (keeping the
    modification time), then removes the original. Returns why it failed, or None."""
    if os.path.lexists(target):
        return f"{target} already exists; nothing was overwritten"
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.move(source, target)
    except OSError as e:
        return f"could not move: {e.strerror or e}"
    return None


def _write_manifest(folder: Path, moves: list[Move], state: str, path: Path | None = None) -> Path:
    """Write (atomically, fsynced) the list of moves before they happen."""
    path = path or folder / f"manifest-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**9:09d}.json"
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w") as f:
        json.dump({"state": state, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                   "moves": [asdict(m) for m in moves]}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    return path


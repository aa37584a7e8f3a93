"""Move duplicates aside, never delete: a manifest written before any file moves, the store
following the moves (quarantined rows leave search, keeping their embeddings), and an undo that
puts every file back byte for byte and brings its row back without re-embedding.

Order of an apply, each step safe to be interrupted: unfinished manifests settled -> manifest
(fsynced, state 'applying') -> rows marked quarantined and the moves recorded in the store (one
transaction) -> files moved (see safe_move), each keeper checked again just before -> moves that
failed marked back -> manifest 'applied'. Each apply moves into a folder of its own (named after
its manifest), mirroring the files' absolute paths, so a name used again never meets an older
copy. An undo marks its manifest 'undoing' first. A later apply or undo finds an unfinished
manifest and completes what it was doing from the side whose bytes are intact. Only moves this
store recorded are undone; the rules are written out in docs/safety.md."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from ..faults import fault_point
from .lock import WriterLock
from .quarantine_moves import (
    MANIFEST_GLOB,
    ROW_COLUMNS,
    Move,
    QuarantineReport,
    changed,
    companion_moves,
    keeper_problem,
    latest_manifest,
    new_manifest_path,
    quarantine_dir,
    read_manifest,
    readable_digest,
    remove_temporary_manifests,
    same_file,
    target,
    unfinished_manifests,
    units,
    unmovable,
    write_manifest,
)
from .quarantine_repair import latest_of_ours, settle_unfinished, undo_moves
from .safe_move import MoveError, move_file
from .store import Store, disk_path, open_store
from .vectors import open_for_writing, sync_and_save

__all__ = ["Move", "QuarantineReport", "quarantine_files", "quarantine_plan", "undo_quarantine", "settle_quarantine",
           "unfinished_manifests", "latest_manifest", "quarantine_dir", "MANIFEST_GLOB"]

WAIT_SECONDS = 10.0


def quarantine_files(store_dir, ids, *, keepers: dict[int, int] | None = None, folder: Path | None = None,
                     wait: float = WAIT_SECONDS) -> QuarantineReport:
    """Move the files of these indexed images into the quarantine folder and take them out of the
    index. `keepers` maps a file to the copy that stays: it must exist, unchanged since indexing,
    and be another file, or that file does not move. Files changed since they were indexed, gone,
    or links are skipped and said."""
    store = open_store(store_dir, read_only=False)
    store.require()
    folder = Path(folder) if folder else quarantine_dir(store.dir)
    keepers = keepers or {}
    wanted = sorted({int(i) for i in ids})
    with WriterLock(store.dir / "writer.lock", wait=wait):
        vectors = open_for_writing(store, store.manifest())
        report = QuarantineReport(None)
        report.settled = settle_unfinished(store, folder)
        rows = store.records_by_id(ROW_COLUMNS, sorted({*wanted, *keepers.values()}))
        manifest = new_manifest_path(folder)
        moves, keeper_checked = [], {}  # a keeper of many copies is read once
        for row_id in wanted:
            row, keeper = rows.get(row_id), keepers.get(row_id)
            why = unmovable(row, folder)
            if not why and keeper is not None:
                if keeper not in keeper_checked:
                    keeper_checked[keeper] = keeper_problem(rows.get(keeper), keeper)
                why = keeper_checked[keeper] or same_file(row, rows[keeper])
            if why:
                report.skipped.append((disk_path(row) if row else f"id {row_id}", why))
                continue
            source = disk_path(row)
            moves.append(Move(row_id, source, target(folder, manifest, source), row["size"], row["mtime_ns"],
                              row["content_hash"], keeper))
        moves = companion_moves(moves, folder, manifest)
        if moves:
            _apply_moves(store, folder, manifest, moves, rows, report)
        sync_and_save(store, vectors)
    return report


def quarantine_plan(store_dir, keepers: dict[int, int], *, folder: Path | None = None,
                    wait: float = WAIT_SECONDS) -> QuarantineReport:
    """Apply a cleanup plan: move every file of `keepers` (each file -> the copy that stays, as
    search.resolve's ResolutionPlan.keepers() gives it) into the quarantine, each checked against
    its keeper. The one apply verb of `vitsearch dupes --apply` and the page."""
    return quarantine_files(store_dir, keepers, keepers=keepers, folder=folder, wait=wait)


def _apply_moves(store: Store, folder: Path, manifest: Path, moves: list[Move], rows: dict,
                 report: QuarantineReport) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_manifest(manifest, moves, "applying")
    with store.transaction() as tx:
        tx.set_status([m.id for m in moves], "quarantined")
        tx.record_moves(manifest.name, moves)
    failed: list[Move] = []
    for unit in units(moves):
        fault_point("quarantine_move")
        keeper = rows.get(unit[0].keeper) if unit[0].keeper is not None else None
        why = (changed(keeper) and f"its keeper {disk_path(keeper)} is gone or changed; nothing moved"
               if keeper else None)
        failed += _move_unit(unit, why, report)
    if failed:
        with store.transaction() as tx:
            tx.set_status([m.id for m in failed if not m.companion], "ok")
            tx.forget_moves(manifest.name, failed)
    if report.moved:
        report.manifest = write_manifest(manifest, report.moved, "applied")
    else:
        manifest.unlink()  # it lists nothing that moved


def _move_unit(unit: list[Move], why: str | None, report: QuarantineReport) -> list[Move]:
    """Move an image and then the files that belong to it; if one cannot go, those that went come
    back (an image never leaves without its companions). Returns the moves that did not happen."""
    done: list[Move] = []
    current = unit[0]
    try:
        if why:
            raise MoveError(why)
        for current in unit:
            if current.companion:
                fault_point("companion_move")
                if _stays(current, report):
                    continue
                if readable_digest(current.source) != current.content_hash:
                    raise MoveError(f"{current.source} changed since the plan (a photo manager wrote it?): "
                                    "nothing of its image moved")
            move_file(current.source, current.target, current.expected)
            done.append(current)
    except MoveError as e:
        report.skipped.append((current.source, str(e)))
        if _take_back(done):
            return unit
    report.moved += done  # what moved stays quarantined (a take-back that failed too), for an undo
    return [m for m in unit if m not in done]


def _stays(move: Move, report: QuarantineReport) -> bool:
    """A companion shared with files that did not move after all stays with them."""
    moved = {m.source for m in report.moved}
    stayed = [o for o in move.shared_with if o not in moved]
    if stayed:
        report.skipped.append((move.source, f"it also belongs to {stayed[0]}, which stays: it stays too"))
    return bool(stayed)


def _take_back(done: list[Move]) -> bool:
    """Put back the files of an image that moved before one of them could not: an image never
    leaves without the files that belong to it. True when all are home again."""
    for move in reversed(done):
        try:
            move_file(move.target, move.source, move.expected)
        except (MoveError, OSError):
            return False
    return True


def undo_quarantine(store_dir, manifest: Path | None = None, *, folder: Path | None = None,
                    wait: float = WAIT_SECONDS) -> QuarantineReport:
    """Put back every file of `manifest` (default: the latest one of this store's cleanups) and
    bring its row back with the embedding it had. Only moves this store recorded are undone, with
    the quarantined copy at its place in this store's quarantine and the bytes the ones moved.
    A file whose old place is taken by another file stays quarantined, and the manifest keeps it."""
    store = open_store(store_dir, read_only=False)
    store.require()
    folder = Path(folder) if folder else quarantine_dir(store.dir)
    with WriterLock(store.dir / "writer.lock", wait=wait):
        remove_temporary_manifests(folder)
        manifest = Path(manifest) if manifest else latest_of_ours(store, folder)
        if manifest is None:
            raise ConfigError(f"nothing to undo: no quarantine manifest in {folder}")
        state, moves = read_manifest(manifest)
        vectors = open_for_writing(store, store.manifest())
        report = QuarantineReport(manifest)
        undo_moves(store, folder, manifest, state, moves, report)
        sync_and_save(store, vectors)
    return report


def settle_quarantine(store_dir, *, folder: Path | None = None, wait: float = WAIT_SECONDS) -> list[str]:
    """Finish any apply or undo that was interrupted (a kill, a full disk), before a new plan is
    made from the store; one line per manifest settled."""
    store = open_store(store_dir, read_only=False)
    store.require()
    folder = Path(folder) if folder else quarantine_dir(store.dir)
    if not unfinished_manifests(folder) and not any(folder.glob("manifest-*.tmp")):
        return []
    with WriterLock(store.dir / "writer.lock", wait=wait):
        vectors = open_for_writing(store, store.manifest())
        notes = settle_unfinished(store, folder)
        sync_and_save(store, vectors)
    return notes

"""Move duplicates aside, never delete: a manifest written before any file moves, the store
following the moves (quarantined rows leave search, keeping their embeddings), and an undo that
puts every file back byte for byte and brings its row back without re-embedding.

Order of an apply, each step safe to be interrupted: unfinished manifests settled -> manifest
(fsynced, state 'applying') -> rows marked quarantined (one transaction) -> files moved (see
safe_move) -> rows of files that could not move marked back -> manifest 'applied'. An undo marks
its manifest 'undoing' first. A later apply or undo finds an unfinished manifest and completes
what it was doing from the side whose bytes are intact; a row whose file is back in place is
also revived by the next sync. Only moves this store's apply made are ever undone."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import ConfigError
from .faults import fault_point
from .lock import WriterLock
from .safe_move import Expected, MoveError, file_digest, is_intact, is_partial_copy_of, move_file, remove_partial
from .store import Store, open_store
from .vectors import open_for_writing, sync_and_save

__all__ = ["Move", "QuarantineReport", "quarantine_files", "undo_quarantine", "settle_quarantine",
           "unfinished_manifests", "latest_manifest", "quarantine_dir", "MANIFEST_GLOB"]

MANIFEST_GLOB = "manifest-*.json"
WAIT_SECONDS = 10.0
UNFINISHED = ("applying", "undoing")


@dataclass(frozen=True)
class Move:
    id: int
    source: str
    target: str
    size: int
    mtime_ns: int
    content_hash: str | None
    keeper: int | None = None  # the copy that stays; None for moves asked for by id alone

    @property
    def expected(self) -> Expected:
        return Expected(self.size, self.content_hash)


@dataclass
class QuarantineReport:
    manifest: Path | None
    moved: list[Move] = field(default_factory=list)  # for an undo: the files put back
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    settled: list[str] = field(default_factory=list)  # what was done about an interrupted run

    @property
    def bytes(self) -> int:
        return sum(m.size for m in self.moved)


def quarantine_dir(store_dir) -> Path:
    """Where a store's quarantined files and manifests go (hidden: scans skip it)."""
    return open_store(store_dir).dir / ".quarantine"


def quarantine_files(store_dir, ids, *, keepers: dict[int, int] | None = None, folder: Path | None = None,
                     wait: float = WAIT_SECONDS) -> QuarantineReport:
    """Move the files of these indexed images into the quarantine folder (mirroring their
    absolute paths) and take them out of the index. `keepers` maps a file to the copy that
    stays: it must exist, unchanged since indexing, and be another file, or nothing moves for it.
    Files changed since they were indexed, gone, or links are skipped and said."""
    store = open_store(store_dir, read_only=False)
    store.require()
    folder = Path(folder) if folder else quarantine_dir(store.dir)
    keepers = keepers or {}
    wanted = sorted({int(i) for i in ids})
    with WriterLock(store.dir / "writer.lock", wait=wait):
        vectors = open_for_writing(store, store.manifest())
        report = QuarantineReport(None)
        report.settled = _settle_unfinished(store, folder)
        rows = store.records_by_id("path, size, mtime_ns, content_hash", sorted({*wanted, *keepers.values()}))
        moves, keeper_checked = [], {}  # a keeper of many copies is read once
        for row_id in wanted:
            row, keeper = rows.get(row_id), keepers.get(row_id)
            why = _unmovable(row, folder)
            if not why and keeper is not None:
                if keeper not in keeper_checked:
                    keeper_checked[keeper] = _keeper_problem(rows.get(keeper), keeper)
                why = keeper_checked[keeper] or _same_file_as_keeper(row, rows[keeper])
            if why:
                report.skipped.append((row["path"] if row else f"id {row_id}", why))
                continue
            moves.append(Move(row_id, row["path"], _target(folder, row["path"]), row["size"], row["mtime_ns"],
                              row["content_hash"], keeper))
        if moves:
            _apply_moves(store, folder, moves, report)
        sync_and_save(store, vectors)
    return report


def _apply_moves(store: Store, folder: Path, moves: list[Move], report: QuarantineReport) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    report.manifest = _write_manifest(folder, moves, "applying")
    with store.transaction() as tx:
        tx.set_status([m.id for m in moves], "quarantined")
    failed = []
    for move in moves:
        fault_point("quarantine_move")
        try:
            move_file(move.source, move.target, move.expected)
        except MoveError as e:
            failed.append(move.id)
            report.skipped.append((move.source, str(e)))
        else:
            report.moved.append(move)
    if failed:
        with store.transaction() as tx:
            tx.set_status(failed, "ok")
    _write_manifest(folder, report.moved, "applied", report.manifest)


def undo_quarantine(store_dir, manifest: Path | None = None, *, folder: Path | None = None,
                    wait: float = WAIT_SECONDS) -> QuarantineReport:
    """Put back every file of `manifest` (default: the latest one not undone) and bring its row
    back with the embedding it had. Only moves this store's apply made are undone: the copy must
    lie at its place in this store's quarantine, the row must be this store's with that path,
    and the bytes must be the ones moved. A file whose old place is taken stays quarantined."""
    store = open_store(store_dir, read_only=False)
    store.require()
    folder = Path(folder) if folder else quarantine_dir(store.dir)
    with WriterLock(store.dir / "writer.lock", wait=wait):
        _remove_temporary_manifests(folder)
        manifest = Path(manifest) if manifest else _latest_of_ours(store, folder)
        if manifest is None:
            raise ConfigError(f"nothing to undo: no quarantine manifest in {folder}")
        state, moves = _read_manifest(manifest)
        ours = manifest.parent.resolve() == folder.resolve()
        if ours and state != "undoing":
            _write_manifest(folder, moves, "undoing", manifest)
        vectors = open_for_writing(store, store.manifest())
        report = QuarantineReport(manifest)
        _undo_moves(store, folder, moves, report)
        if not report.skipped and ours:
            manifest.rename(manifest.with_suffix(".undone"))
        _remove_empty_folders(folder, [m.target for m in report.moved])
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
        notes = _settle_unfinished(store, folder)
        sync_and_save(store, vectors)
    return notes


def unfinished_manifests(folder: Path) -> list[Path]:
    """Manifests of an apply or undo that did not finish (read only)."""
    found = []
    for manifest in sorted(Path(folder).glob(MANIFEST_GLOB)) if Path(folder).is_dir() else []:
        try:
            if json.loads(manifest.read_text()).get("state") in UNFINISHED:
                found.append(manifest)
        except (OSError, ValueError, AttributeError):
            continue
    return found


def latest_manifest(folder: Path) -> Path | None:
    manifests = sorted(Path(folder).glob(MANIFEST_GLOB)) if Path(folder).is_dir() else []
    return manifests[-1] if manifests else None


def _latest_of_ours(store: Store, folder: Path) -> Path | None:
    """The newest manifest that names a move of this store (one dropped in from elsewhere must
    not stand in the way of the user's own); else the newest, whose refusals the undo reports."""
    manifests = sorted(folder.glob(MANIFEST_GLOB), reverse=True) if folder.is_dir() else []
    for manifest in manifests:
        try:
            _, moves = _read_manifest(manifest)
        except ConfigError:
            continue
        rows = _rows_any_status(store, [m.id for m in moves])
        if any(not _not_ours(m, rows.get(m.id), folder) for m in moves):
            return manifest
    return manifests[0] if manifests else None


def _undo_moves(store: Store, folder: Path, moves: list[Move], report: QuarantineReport) -> None:
    rows = _rows_any_status(store, [m.id for m in moves])
    for move in moves:
        why = _not_ours(move, rows.get(move.id), folder) or _put_back(move)
        if why:
            report.skipped.append((move.source, why))
        else:
            report.moved.append(move)
    back = {m.id for m in report.moved if rows[m.id]["status"] == "quarantined"}
    if back:
        with store.transaction() as tx:
            tx.set_status(sorted(back), "ok")


def _put_back(move: Move) -> str | None:
    """Bring one moved file back to its library path from whichever side is intact."""
    remove_partial(move.source)
    remove_partial(move.target)
    at_home, aside = is_intact(move.source, move.expected), is_intact(move.target, move.expected)
    if at_home:
        if aside or os.path.lexists(move.target) and is_partial_copy_of(move.target, move.source):
            os.unlink(move.target)  # a second, complete or partial, copy of what is home again
        return None
    if not aside:
        return (f"the quarantined copy at {move.target} is gone or is not the file that was moved; "
                "nothing was touched")
    if os.path.lexists(move.source):
        if not is_partial_copy_of(move.source, move.target):
            return f"its old place is taken by another file; the quarantined copy stays at {move.target}"
        os.unlink(move.source)  # a copy killed half-way by an older version: replace it
    fault_point("undo_move")
    try:
        move_file(move.target, move.source, move.expected)
    except MoveError as e:
        return str(e)
    return None


def _finish_apply(move: Move) -> bool:
    """Complete one move of an interrupted apply; True when the file ends up quarantined."""
    remove_partial(move.source)
    remove_partial(move.target)
    at_home, aside = is_intact(move.source, move.expected), is_intact(move.target, move.expected)
    if aside:
        if at_home:
            os.unlink(move.source)  # the copy was complete and verified; only the unlink was left
        return True
    if not at_home:
        return False
    if os.path.lexists(move.target):
        os.unlink(move.target)  # a partial copy in our own quarantine
    try:
        move_file(move.source, move.target, move.expected)
    except MoveError:
        return False
    return True


def _settle_unfinished(store: Store, folder: Path) -> list[str]:
    """Finish what an interrupted apply or undo was doing, so that a new apply starts from a
    known state. Returns one line per manifest settled."""
    _remove_temporary_manifests(folder)
    notes = []
    for manifest in unfinished_manifests(folder):
        state, moves = _read_manifest(manifest)
        if state == "undoing":
            report = QuarantineReport(manifest)
            _undo_moves(store, folder, moves, report)
            if not report.skipped:
                manifest.rename(manifest.with_suffix(".undone"))
            notes.append(f"an interrupted undo ({manifest.name}) was finished: {len(report.moved)} files back")
        elif state == "applying":
            rows = _rows_any_status(store, [m.id for m in moves])
            ours = [m for m in moves if not _not_ours(m, rows.get(m.id), folder)]
            done = [m for m in ours if rows[m.id]["status"] == "quarantined" and _finish_apply(m)]
            # a file a sync took back, or one that could not move: home again where it can be
            stuck = [m for m in ours if m not in done and _put_back(m)]
            done += [m for m in stuck if is_intact(m.target, m.expected)]
            home = [m.id for m in ours if m not in done and rows[m.id]["status"] == "quarantined"]
            if home:
                with store.transaction() as tx:
                    tx.set_status(home, "ok")
            _write_manifest(folder, done, "applied", manifest)
            notes.append(f"an interrupted apply ({manifest.name}) was finished: {len(done)} files moved, "
                         f"{len(ours) - len(done)} left in place")
    return notes


def _not_ours(move: Move, row: dict | None, folder: Path) -> str | None:
    """Why this manifest entry is not a move this store's apply made (None when it is)."""
    if row is None or row["path"] != move.source:
        return "not a file this store indexed at that path: refused (the manifest is not this store's)"
    if row["size"] != move.size or (row["content_hash"] and row["content_hash"] != move.content_hash):
        return "the manifest's size or hash differs from the store's: refused"
    if os.path.normpath(move.target) != _target(folder, move.source):
        return f"the manifest puts it outside this store's quarantine ({folder}): refused"
    if not Path(move.target).parent.resolve().is_relative_to(folder.resolve()):
        return "its quarantine folder leads outside the quarantine (a link): refused"
    return None


def _unmovable(row: dict | None, folder: Path) -> str | None:
    if row is None:
        return "not an indexed image (already quarantined, or removed)"
    if os.path.islink(row["path"]):
        return "a symbolic link: moving it would free nothing"
    if _changed(row):
        return _changed(row)
    if Path(row["path"]).is_relative_to(folder):
        return "file is already inside the quarantine folder"
    if row["content_hash"] and file_digest(row["path"]) != row["content_hash"]:
        return "file changed since it was indexed: run `vitsearch index` first"
    return None


def _keeper_problem(keeper: dict | None, keeper_id: int) -> str | None:
    """The copy that stays must be there, as indexed."""
    if keeper is None:
        return f"its keeper (id {keeper_id}) is no longer an indexed image; nothing moved"
    if _changed(keeper):
        return f"its keeper {keeper['path']} is gone or changed since indexing; nothing moved"
    if keeper["content_hash"] and file_digest(keeper["path"]) != keeper["content_hash"]:
        return f"its keeper {keeper['path']} changed since indexing; nothing moved"
    return None


def _same_file_as_keeper(row: dict, keeper: dict) -> str | None:
    if row["id"] == keeper["id"] or os.path.samefile(keeper["path"], row["path"]):
        return f"it is the same file as its keeper {keeper['path']} (a link); nothing moved"
    return None


def _changed(row: dict) -> str | None:
    try:
        stat = os.stat(row["path"])
    except OSError:
        return "file is gone"
    if stat.st_size != row["size"] or stat.st_mtime_ns != row["mtime_ns"]:
        return "file changed since it was indexed: run `vitsearch index` first"
    return None


def _target(folder: Path, source: str) -> str:
    return os.path.normpath(str(folder / Path(source).relative_to(Path(source).anchor)))


def _rows_any_status(store: Store, ids: list[int]) -> dict[int, dict]:
    if not ids:
        return {}
    marks = ", ".join("?" for _ in ids)
    rows = store.records("id, path, size, content_hash, status", f"id IN ({marks})", [int(i) for i in ids])
    return {r["id"]: r for r in rows}


def _read_manifest(path: Path) -> tuple[str, list[Move]]:
    if not path.is_file():
        raise ConfigError(f"no such quarantine manifest: {path}")
    try:
        data = json.loads(path.read_text())
        return str(data["state"]), [Move(**m) for m in data["moves"]]
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} is not a vitsearch quarantine manifest ({type(e).__name__}); "
                          "pass one from the store's .quarantine folder, or none for the latest") from None


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


def _remove_temporary_manifests(folder: Path) -> None:
    """A manifest write killed before its rename leaves a .tmp: the writer lock says none is live."""
    for leftover in folder.glob("manifest-*.tmp") if folder.is_dir() else []:
        leftover.unlink(missing_ok=True)


def _remove_empty_folders(folder: Path, targets: list[str]) -> None:
    """The mirrored folders an undo emptied, up to the quarantine folder itself."""
    top = folder.resolve()
    for target in targets:
        parent = Path(target).parent
        while parent.resolve() != top and parent.resolve().is_relative_to(top):
            try:
                parent.rmdir()
            except OSError:
                break  # not empty, or gone
            parent = parent.parent

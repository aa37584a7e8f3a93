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

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..errors import ConfigError
from ..faults import fault_point
from .lock import WriterLock
from .safe_move import Expected, MoveError, file_digest, is_intact, is_partial_copy_of, move_file, remove_partial
from .store import Store, disk_path, encode_path, open_store
from .vectors import open_for_writing, sync_and_save

__all__ = ["Move", "QuarantineReport", "quarantine_files", "quarantine_plan", "undo_quarantine", "settle_quarantine",
           "unfinished_manifests", "latest_manifest", "quarantine_dir", "MANIFEST_GLOB"]

MANIFEST_GLOB = "manifest-*.json"
WAIT_SECONDS = 10.0
UNFINISHED = ("applying", "undoing")
_ROW_COLUMNS = "path, path_bytes, size, mtime_ns, content_hash"


@dataclass(frozen=True)
class Move:
    id: int
    source: str  # the file's name on disk
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
        report.settled = _settle_unfinished(store, folder)
        rows = store.records_by_id(_ROW_COLUMNS, sorted({*wanted, *keepers.values()}))
        manifest = _new_manifest_path(folder)
        moves, keeper_checked = [], {}  # a keeper of many copies is read once
        for row_id in wanted:
            row, keeper = rows.get(row_id), keepers.get(row_id)
            why = _unmovable(row, folder)
            if not why and keeper is not None:
                if keeper not in keeper_checked:
                    keeper_checked[keeper] = _keeper_problem(rows.get(keeper), keeper)
                why = keeper_checked[keeper] or _same_file(row, rows[keeper])
            if why:
                report.skipped.append((disk_path(row) if row else f"id {row_id}", why))
                continue
            source = disk_path(row)
            moves.append(Move(row_id, source, _target(folder, manifest, source), row["size"], row["mtime_ns"],
                              row["content_hash"], keeper))
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
    _write_manifest(manifest, moves, "applying")
    with store.transaction() as tx:
        tx.set_status([m.id for m in moves], "quarantined")
        tx.record_moves(manifest.name, moves)
    failed = []
    for move in moves:
        fault_point("quarantine_move")
        keeper = rows.get(move.keeper) if move.keeper is not None else None
        why = (_changed(keeper) and f"its keeper {disk_path(keeper)} is gone or changed; nothing moved"
               if keeper else None)
        try:
            if why:
                raise MoveError(why)
            move_file(move.source, move.target, move.expected)
        except MoveError as e:
            failed.append(move.id)
            report.skipped.append((move.source, str(e)))
        else:
            report.moved.append(move)
    if failed:
        with store.transaction() as tx:
            tx.set_status(failed, "ok")
            tx.forget_moves(manifest.name, failed)
    if report.moved:
        report.manifest = _write_manifest(manifest, report.moved, "applied")
    else:
        manifest.unlink()  # it lists nothing that moved


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
        _remove_temporary_manifests(folder)
        manifest = Path(manifest) if manifest else _latest_of_ours(store, folder)
        if manifest is None:
            raise ConfigError(f"nothing to undo: no quarantine manifest in {folder}")
        state, moves = _read_manifest(manifest)
        vectors = open_for_writing(store, store.manifest())
        report = QuarantineReport(manifest)
        _undo_moves(store, folder, manifest, state, moves, report)
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


# ---- which entries are ours, and where their copies are now ----

def _ours(store: Store, folder: Path, manifest: Path, moves: list[Move]) -> tuple[list[Move], list[tuple[Move, str]]]:
    """The entries this store's apply made, each with the place of its copy in this quarantine
    now (the store may have moved since), and the others with why they are refused."""
    recorded = store.recorded_moves(manifest.name)
    rows = _rows_any_status(store, [m.id for m in moves]) if recorded is None else {}
    ours, refused = [], []
    for move in moves:
        why = _not_recorded(move, recorded) if recorded is not None else _not_a_row(move, rows.get(move.id))
        current = _current_target(folder, manifest, move)
        if not why and current is None:
            why = f"the manifest puts it outside this store's quarantine ({folder}): refused"
        if why:
            refused.append((move, why))
        else:
            ours.append(replace(move, target=current))
    return ours, refused


def _not_recorded(move: Move, recorded: dict[int, tuple]) -> str | None:
    if recorded.get(move.id) != (encode_path(move.source)[0], move.size, move.content_hash):
        return "not a move this store's cleanup recorded: refused (the manifest is not this store's)"
    return None


def _not_a_row(move: Move, row: dict | None) -> str | None:
    """A manifest written before the store recorded its moves: the row must be the file moved."""
    if row is None or disk_path(row) != move.source:
        return "not a file this store indexed at that path: refused (the manifest is not this store's)"
    if row["size"] != move.size or (row["content_hash"] and row["content_hash"] != move.content_hash):
        return "the manifest's size or hash differs from the store's: refused"
    return None


def _current_target(folder: Path, manifest: Path, move: Move) -> str | None:
    """Where the quarantined copy lies in this store's quarantine: in the manifest's own folder
    (or, for manifests of before those, straight under the quarantine), mirroring the source."""
    mirrored = _mirrored(move.source)
    for layout in (os.path.join(manifest.stem, mirrored), mirrored):
        if os.path.normpath(move.target).endswith(os.sep + layout):
            current = os.path.join(folder, layout)
            inside = Path(current).parent.resolve().is_relative_to(folder.resolve())
            return current if inside else None  # a link inside the quarantine leads out
    return None


# ---- undo ----

def _latest_of_ours(store: Store, folder: Path) -> Path | None:
    """The newest manifest that holds a move of this store (one dropped in from elsewhere must not
    stand in the way of the user's own); else the newest, whose refusals the undo reports."""
    manifests = sorted(folder.glob(MANIFEST_GLOB), reverse=True) if folder.is_dir() else []
    for manifest in manifests:
        try:
            _, moves = _read_manifest(manifest)
        except ConfigError:
            continue
        if _ours(store, folder, manifest, moves)[0]:
            return manifest
    return manifests[0] if manifests else None


def _undo_moves(store: Store, folder: Path, manifest: Path, state: str, moves: list[Move],
                report: QuarantineReport) -> None:
    ours, refused = _ours(store, folder, manifest, moves)
    report.skipped += [(m.source, why) for m, why in refused]
    mine = manifest.parent.resolve() == folder.resolve()  # a manifest handed in from elsewhere is never written
    if ours and mine and state != "undoing":
        _write_manifest(manifest, moves, "undoing")
    rows = _rows_any_status(store, [m.id for m in ours])
    for move in ours:
        why = _put_back(move)
        if why:
            report.skipped.append((move.source, why))
        else:
            report.moved.append(move)
    back = [m.id for m in report.moved]
    if back:
        with store.transaction() as tx:
            tx.set_status([i for i in back if rows.get(i, {}).get("status") == "quarantined"], "ok")
            tx.forget_moves(manifest.name, back)
    _remove_empty_folders(folder, [m.target for m in report.moved])
    if not mine or not ours:
        return
    left = [m for m in moves if m.id not in set(back)]
    if left:
        _write_manifest(manifest, left, "applied")  # what stays quarantined, for a later undo
    else:
        manifest.rename(manifest.with_suffix(".undone"))


def _put_back(move: Move) -> str | None:
    """Bring one moved file back to its library path from whichever side is intact."""
    try:
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
                return (f"its old place is taken by another file; the quarantined copy stays at {move.target} "
                        "(move the other file away, then undo again)")
            os.unlink(move.source)  # a copy killed half-way by an older version: replace it
        fault_point("undo_move")
        move_file(move.target, move.source, move.expected)
    except MoveError as e:
        return str(e)
    except OSError as e:
        return f"could not put it back: {e.strerror or e}; the quarantined copy stays at {move.target}"
    return None


# ---- finishing what was interrupted ----

def _settle_unfinished(store: Store, folder: Path) -> list[str]:
    """Finish what an interrupted apply or undo was doing, so that a new apply starts from a
    known state. Returns one line per manifest settled."""
    _remove_temporary_manifests(folder)
    notes = []
    for manifest in unfinished_manifests(folder):
        state, moves = _read_manifest(manifest)
        if state == "undoing":
            report = QuarantineReport(manifest)
            _undo_moves(store, folder, manifest, state, moves, report)
            notes.append(f"an interrupted undo ({manifest.name}) was finished: {len(report.moved)} files back"
                         + (f", {len(report.skipped)} could not be" if report.skipped else ""))
        elif state == "applying":
            notes.append(_finish_interrupted_apply(store, folder, manifest, moves))
    return notes


def _finish_interrupted_apply(store: Store, folder: Path, manifest: Path, moves: list[Move]) -> str:
    """Each move still waiting is made if its file and its keeper are as they were; the rest go
    (or stay) home. The manifest then lists what is quarantined."""
    ours, _ = _ours(store, folder, manifest, moves)
    rows = _rows_any_status(store, [m.id for m in ours] + [m.keeper for m in ours if m.keeper is not None])
    done, home = [], []
    for move in ours:
        keeper = rows.get(move.keeper) if move.keeper is not None else None
        ready = rows.get(move.id, {}).get("status") == "quarantined" and not (
            move.keeper is not None and (_keeper_problem(keeper, move.keeper) or _same_file(rows[move.id], keeper)))
        if ready and _finish_move(move):
            done.append(move)
        elif _put_back(move) and is_intact(move.target, move.expected):
            done.append(move)  # it cannot go home (its place is taken): it stays quarantined
        else:
            home.append(move)
    if home:
        with store.transaction() as tx:
            tx.set_status([m.id for m in home if rows.get(m.id, {}).get("status") == "quarantined"], "ok")
            tx.forget_moves(manifest.name, [m.id for m in home])
    if done or not ours:
        gone_home = {m.id for m in home}
        _write_manifest(manifest, [m for m in moves if m.id not in gone_home], "applied")
    else:
        manifest.unlink()  # nothing of it is quarantined
    return (f"an interrupted apply ({manifest.name}) was finished: {len(done)} files moved, "
            f"{len(home)} left in place")


def _finish_move(move: Move) -> bool:
    """Complete one move of an interrupted apply; True when the file ends up quarantined."""
    try:
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
            if not is_partial_copy_of(move.target, move.source):
                return False  # not ours to replace
            os.unlink(move.target)  # a copy killed half-way by an older version
        move_file(move.source, move.target, move.expected)
    except (MoveError, OSError):
        return False
    return True


# ---- checks before a move ----

def _unmovable(row: dict | None, folder: Path) -> str | None:
    if row is None:
        return "not an indexed image (already quarantined, or removed)"
    path = disk_path(row)
    if os.path.islink(path):
        return "a symbolic link: moving it would free nothing"
    if _changed(row):
        return _changed(row)
    if Path(path).is_relative_to(folder):
        return "file is already inside the quarantine folder"
    if row["content_hash"] and _digest(path) != row["content_hash"]:
        return "file changed since it was indexed: run `vitsearch index` first"
    return None


def _keeper_problem(keeper: dict | None, keeper_id: int) -> str | None:
    """The copy that stays must be there, as indexed."""
    if keeper is None:
        return f"its keeper (id {keeper_id}) is no longer an indexed image; nothing moved"
    if _changed(keeper) or (keeper["content_hash"] and _digest(disk_path(keeper)) != keeper["content_hash"]):
        return f"its keeper {disk_path(keeper)} is gone or changed since indexing; nothing moved"
    return None


def _same_file(row: dict, keeper: dict) -> str | None:
    try:
        same = row["id"] == keeper["id"] or os.path.samefile(disk_path(keeper), disk_path(row))
    except OSError:
        same = False
    return f"it is the same file as its keeper {disk_path(keeper)} (a link); nothing moved" if same else None


def _changed(row: dict) -> str | None:
    try:
        stat = os.stat(disk_path(row))
    except OSError:
        return "file is gone"
    if stat.st_size != row["size"] or stat.st_mtime_ns != row["mtime_ns"]:
        return "file changed since it was indexed: run `vitsearch index` first"
    return None


def _digest(path: str) -> str | None:
    try:
        return file_digest(path)
    except OSError:
        return None


# ---- manifests and paths ----

def _mirrored(source: str) -> str:
    return os.path.normpath(str(Path(source).relative_to(Path(source).anchor)))


def _target(folder: Path, manifest: Path, source: str) -> str:
    return os.path.join(folder, manifest.stem, _mirrored(source))


def _rows_any_status(store: Store, ids: list[int]) -> dict[int, dict]:
    if not ids:
        return {}
    marks = ", ".join("?" for _ in ids)
    rows = store.records(f"id, status, {_ROW_COLUMNS}", f"id IN ({marks})", [int(i) for i in ids])
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


def _new_manifest_path(folder: Path) -> Path:
    return folder / f"manifest-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**9:09d}.json"


def _write_manifest(path: Path, moves: list[Move], state: str) -> Path:
    """Write (atomically, fsynced) the list of moves before they happen."""
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

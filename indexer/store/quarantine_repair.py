"""Undoing a quarantine and finishing one that was interrupted, from the side whose bytes are
intact, trusting only the moves this store recorded (docs/safety.md)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from ..errors import ConfigError
from ..faults import fault_point
from .quarantine_moves import (
    MANIFEST_GLOB,
    Move,
    QuarantineReport,
    keeper_problem,
    mirrored_path,
    read_manifest,
    remove_temporary_manifests,
    rows_any_status,
    same_file,
    unfinished_manifests,
    write_manifest,
)
from .safe_move import MoveError, is_intact, is_partial_copy_of, move_file, remove_partial
from .store import Store, disk_path, encode_path

__all__ = ["undo_moves", "settle_unfinished", "latest_of_ours"]


# ---- which entries are ours, and where their copies are now ----

def _ours(store: Store, folder: Path, manifest: Path, moves: list[Move]) -> tuple[list[Move], list[tuple[Move, str]]]:
    """The entries this store's apply made, each with the place of its copy in this quarantine
    now (the store may have moved since), and the others with why they are refused."""
    recorded = store.recorded_moves(manifest.name)
    rows = rows_any_status(store, [m.id for m in moves]) if recorded is None else {}
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


def _not_recorded(move: Move, recorded: dict[tuple[int, str], tuple]) -> str | None:
    if recorded.get((move.id, encode_path(move.source)[0])) != (move.size, move.content_hash):
        return "not a move this store's cleanup recorded: refused (the manifest is not this store's)"
    return None


def _not_a_row(move: Move, row: dict | None) -> str | None:
    """A manifest written before the store recorded its moves: the row must be the file moved."""
    if move.companion:
        return "a companion file the store has no record of moving: refused (the manifest is not this store's)"
    if row is None or disk_path(row) != move.source:
        return "not a file this store indexed at that path: refused (the manifest is not this store's)"
    if row["size"] != move.size or (row["content_hash"] and row["content_hash"] != move.content_hash):
        return "the manifest's size or hash differs from the store's: refused"
    return None


def _current_target(folder: Path, manifest: Path, move: Move) -> str | None:
    """Where the quarantined copy lies in this store's quarantine: in the manifest's own folder
    (or, for manifests of before those, straight under the quarantine), mirroring the source."""
    mirrored = mirrored_path(move.source)
    for layout in (os.path.join(manifest.stem, mirrored), mirrored):
        if os.path.normpath(move.target).endswith(os.sep + layout):
            current = os.path.join(folder, layout)
            inside = Path(current).parent.resolve().is_relative_to(folder.resolve())
            return current if inside else None  # a link inside the quarantine leads out
    return None


# ---- undo ----

def latest_of_ours(store: Store, folder: Path) -> Path | None:
    """The newest manifest that holds a move of this store (one dropped in from elsewhere must not
    stand in the way of the user's own); else the newest, whose refusals the undo reports."""
    manifests = sorted(folder.glob(MANIFEST_GLOB), reverse=True) if folder.is_dir() else []
    for manifest in manifests:
        try:
            _, moves = read_manifest(manifest)
        except ConfigError:
            continue
        if _ours(store, folder, manifest, moves)[0]:
            return manifest
    return manifests[0] if manifests else None


def undo_moves(store: Store, folder: Path, manifest: Path, state: str, moves: list[Move],
                report: QuarantineReport) -> None:
    ours, refused = _ours(store, folder, manifest, moves)
    report.skipped += [(m.source, why) for m, why in refused]
    mine = manifest.parent.resolve() == folder.resolve()  # a manifest handed in from elsewhere is never written
    if ours and mine and state != "undoing":
        write_manifest(manifest, moves, "undoing")
    rows = rows_any_status(store, [m.id for m in ours])
    images = {m.id for m in ours if not m.companion}
    for move in sorted(ours, key=lambda m: m.companion):  # images first: their companions follow them
        if move.companion and move.id in images and not any(m.id == move.id for m in report.moved):
            report.skipped.append((move.source, "its image stays quarantined, and it stays with it"))
            continue
        why = _put_back(move)
        if why:
            report.skipped.append((move.source, why))
        else:
            report.moved.append(move)
    back = {m.key for m in report.moved}
    if back:
        with store.transaction() as tx:
            tx.set_status([m.id for m in report.moved if not m.companion
                           and rows.get(m.id, {}).get("status") == "quarantined"], "ok")
            tx.forget_moves(manifest.name, report.moved)
    _remove_empty_folders(folder, [m.target for m in report.moved])
    if not mine or not ours:
        return
    left = [m for m in moves if m.key not in back]
    if left:
        write_manifest(manifest, left, "applied")  # what stays quarantined, for a later undo
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

def settle_unfinished(store: Store, folder: Path) -> list[str]:
    """Finish what an interrupted apply or undo was doing, so that a new apply starts from a
    known state. Returns one line per manifest settled."""
    remove_temporary_manifests(folder)
    notes = []
    for manifest in unfinished_manifests(folder):
        state, moves = read_manifest(manifest)
        if state == "undoing":
            report = QuarantineReport(manifest)
            undo_moves(store, folder, manifest, state, moves, report)
            notes.append(f"an interrupted undo ({manifest.name}) was finished: {len(report.moved)} files back"
                         + (f", {len(report.skipped)} could not be" if report.skipped else ""))
        elif state == "applying":
            notes.append(_finish_interrupted_apply(store, folder, manifest, moves))
    return notes


def _finish_interrupted_apply(store: Store, folder: Path, manifest: Path, moves: list[Move]) -> str:
    """Each move still waiting is made if its file and its keeper are as they were; the rest go
    (or stay) home. The files that belong to an image follow it. The manifest then lists what is
    quarantined."""
    ours, _ = _ours(store, folder, manifest, moves)
    rows = rows_any_status(store, [m.id for m in ours] + [m.keeper for m in ours if m.keeper is not None])
    done, home = [], []
    for move in sorted(ours, key=lambda m: m.companion):  # images first: their companions follow them
        keeper = rows.get(move.keeper) if move.keeper is not None else None
        if move.companion:
            gone = {m.source for m in done if not m.companion}
            ready = (any(m.id == move.id and not m.companion for m in done)
                     and all(o in gone for o in move.shared_with))
        else:
            ready = rows.get(move.id, {}).get("status") == "quarantined" and not (
                move.keeper is not None and (keeper_problem(keeper, move.keeper) or same_file(rows[move.id], keeper)))
        if ready and _finish_move(move):
            done.append(move)
        elif _put_back(move) and is_intact(move.target, move.expected):
            done.append(move)  # it cannot go home (its place is taken): it stays quarantined
        else:
            home.append(move)
    for image in [m for m in done if not m.companion]:  # an image whose companion stayed home comes home
        if any(m.id == image.id and m.companion for m in home):
            unit = [m for m in done if m.id == image.id]
            if all(_put_back(m) is None for m in unit):
                done = [m for m in done if m not in unit]
                home += unit
    if home:
        with store.transaction() as tx:
            tx.set_status([m.id for m in home if not m.companion
                           and rows.get(m.id, {}).get("status") == "quarantined"], "ok")
            tx.forget_moves(manifest.name, home)
    if done or not ours:
        gone_home = {m.key for m in home}
        write_manifest(manifest, [m for m in moves if m.key not in gone_home], "applied")
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

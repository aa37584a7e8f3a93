"""What a quarantine move is and what it must meet: the Move and the manifest that lists moves
(written atomically and fsynced before any file moves), where a quarantined copy goes (a folder
per apply, mirroring the file's absolute path), and the checks a file and its keeper pass before
a move. indexer.store.quarantine moves; indexer.store.quarantine_repair finishes and undoes."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import ConfigError
from .companions import companion_plan
from .safe_move import Expected, file_digest, fsync_folder
from .store import Store, disk_path, open_store

__all__ = ["Move", "QuarantineReport", "quarantine_dir", "unfinished_manifests", "latest_manifest", "read_manifest",
           "write_manifest", "new_manifest_path", "remove_temporary_manifests", "target", "mirrored_path",
           "rows_any_status", "unmovable", "keeper_problem", "same_file", "changed", "readable_digest",
           "MANIFEST_GLOB", "UNFINISHED", "ROW_COLUMNS", "companion_moves", "units", "manifests_in_state",
           "write_json_synced"]

MANIFEST_GLOB = "manifest-*.json"
UNFINISHED = ("applying", "undoing")
ROW_COLUMNS = "path, path_bytes, size, mtime_ns, content_hash"


@dataclass(frozen=True)
class Move:
    id: int
    source: str  # the file's name on disk
    target: str
    size: int
    mtime_ns: int
    content_hash: str | None
    keeper: int | None = None  # the copy that stays; None for moves asked for by id alone
    companion: bool = False  # a file that belongs to image `id` (indexer.store.companions), moving with it
    shared_with: tuple[str, ...] = ()  # a companion's other files, moved before it: it goes only if they went

    @property
    def expected(self) -> Expected:
        return Expected(self.size, self.content_hash)

    @property
    def key(self) -> tuple[int, str]:
        return self.id, self.source


@dataclass
class QuarantineReport:
    manifest: Path | None
    moved: list[Move] = field(default_factory=list)  # for an undo: the files put back
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    settled: list[str] = field(default_factory=list)  # what was done about an interrupted run

    @property
    def bytes(self) -> int:
        return sum(m.size for m in self.moved)

    @property
    def images(self) -> int:
        return sum(not m.companion for m in self.moved)

    @property
    def companions(self) -> int:
        return sum(m.companion for m in self.moved)


def quarantine_dir(store_dir) -> Path:
    """Where a store's quarantined files and manifests go (hidden: scans skip it)."""
    return open_store(store_dir).dir / ".quarantine"


def unfinished_manifests(folder: Path) -> list[Path]:
    """Manifests of an apply or undo that did not finish (read only)."""
    return manifests_in_state(folder, MANIFEST_GLOB, UNFINISHED)


def manifests_in_state(folder: Path, pattern: str, states: tuple[str, ...]) -> list[Path]:
    """The manifests of `folder` matching `pattern` whose state is one of `states`, in name order
    (unreadable ones are skipped)."""
    found = []
    for manifest in sorted(Path(folder).glob(pattern)) if Path(folder).is_dir() else []:
        try:
            if json.loads(manifest.read_text()).get("state") in states:
                found.append(manifest)
        except (OSError, ValueError, AttributeError):
            continue
    return found


def latest_manifest(folder: Path) -> Path | None:
    manifests = sorted(Path(folder).glob(MANIFEST_GLOB)) if Path(folder).is_dir() else []
    return manifests[-1] if manifests else None


# ---- checks before a move ----

def unmovable(row: dict | None, folder: Path) -> str | None:
    if row is None:
        return "not an indexed image (already quarantined, or removed)"
    path = disk_path(row)
    if os.path.islink(path):
        return "a symbolic link: moving it would free nothing"
    if changed(row):
        return changed(row)
    if Path(path).is_relative_to(folder):
        return "file is already inside the quarantine folder"
    if row["content_hash"] and readable_digest(path) != row["content_hash"]:
        return "file changed since it was indexed: run `vitsearch index` first"
    return None


def keeper_problem(keeper: dict | None, keeper_id: int) -> str | None:
    """The copy that stays must be there, as indexed."""
    if keeper is None:
        return f"its keeper (id {keeper_id}) is no longer an indexed image; nothing moved"
    if changed(keeper) or (keeper["content_hash"] and readable_digest(disk_path(keeper)) != keeper["content_hash"]):
        return f"its keeper {disk_path(keeper)} is gone or changed since indexing; nothing moved"
    return None


def same_file(row: dict, keeper: dict) -> str | None:
    try:
        same = row["id"] == keeper["id"] or os.path.samefile(disk_path(keeper), disk_path(row))
    except OSError:
        same = False
    return f"it is the same file as its keeper {disk_path(keeper)} (a link); nothing moved" if same else None


def changed(row: dict) -> str | None:
    try:
        stat = os.stat(disk_path(row))
    except OSError:
        return "file is gone"
    if stat.st_size != row["size"] or stat.st_mtime_ns != row["mtime_ns"]:
        return "file changed since it was indexed: run `vitsearch index` first"
    return None


def readable_digest(path: str) -> str | None:
    try:
        return file_digest(path)
    except OSError:
        return None


# ---- manifests and paths ----

def mirrored_path(source: str) -> str:
    return os.path.normpath(str(Path(source).relative_to(Path(source).anchor)))


def target(folder: Path, manifest: Path, source: str) -> str:
    return os.path.join(folder, manifest.stem, mirrored_path(source))


def rows_any_status(store: Store, ids: list[int]) -> dict[int, dict]:
    if not ids:
        return {}
    marks = ", ".join("?" for _ in ids)
    rows = store.records(f"id, status, {ROW_COLUMNS}", f"id IN ({marks})", [int(i) for i in ids])
    return {r["id"]: r for r in rows}


def companion_moves(moves: list[Move], folder: Path, manifest: Path) -> list[Move]:
    """The moves of the files that belong to the moving images (see indexer.store.companions),
    each right after its image's: a companion shared with an image that stays, stays."""
    along = companion_plan([m.source for m in moves])
    result = []
    for move in moves:
        result.append(move)
        for path, others in along.get(move.source, []):
            try:
                stat = os.stat(path, follow_symlinks=False)
                digest = file_digest(path)
            except OSError:
                continue  # gone since the listing: nothing to move
            result.append(Move(move.id, path, target(folder, manifest, path), stat.st_size, stat.st_mtime_ns,
                               digest, move.keeper, companion=True, shared_with=others))
    return result


def units(moves: list[Move]) -> list[list[Move]]:
    """The moves grouped per image, the image first: each moves, or stays, whole."""
    grouped: dict[int, list[Move]] = {}
    for move in moves:
        grouped.setdefault(move.id, []).append(move)
    return [sorted(unit, key=lambda m: m.companion) for unit in grouped.values()]


def read_manifest(path: Path) -> tuple[str, list[Move]]:
    if not path.is_file():
        raise ConfigError(f"no such quarantine manifest: {path}")
    try:
        data = json.loads(path.read_text())
        return str(data["state"]), [Move(**{**m, "shared_with": tuple(m.get("shared_with", ()))})
                                    for m in data["moves"]]
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{path} is not a vitsearch quarantine manifest ({type(e).__name__}); "
                          "pass one from the store's .quarantine folder, or none for the latest") from None


def new_manifest_path(folder: Path) -> Path:
    return folder / f"manifest-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**9:09d}.json"


def write_manifest(path: Path, moves: list[Move], state: str) -> Path:
    """Write (atomically, fsynced) the list of moves before they happen."""
    return write_json_synced(path, {"state": state, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                                    "moves": [asdict(m) for m in moves]})


def write_json_synced(path: Path, data: dict) -> Path:
    """Write a manifest atomically: a temporary beside it, fsynced, renamed over it, the folder
    fsynced."""
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    fsync_folder(str(path.parent))
    return path


def remove_temporary_manifests(folder: Path) -> None:
    """A manifest write killed before its rename leaves a .tmp: the writer lock says none is live."""
    for leftover in folder.glob("manifest-*.tmp") if folder.is_dir() else []:
        leftover.unlink(missing_ok=True)

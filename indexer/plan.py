"""Sync planning: compare a scan with the stored rows and say what needs reading."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import compress

from .extensions import has_video_extension
from .records import records_stale
from .scan import ScannedFile, UnreadableFolder, is_within
from .scope import Scope
from .store.store import NOT_UTF8_MARK, RowState, Store, encode_path

__all__ = ["SyncPlan", "StoredRows", "plan_sync", "stored_sizes", "reusable_hashes", "TRANSIENT_ERRORS"]

# Failures worth retrying even when the file's size and mtime did not change.
TRANSIENT_ERRORS = frozenset({"vanished", "unreadable", "internal"})

_FIELDS = tuple(RowState.__dataclass_fields__)


@dataclass
class SyncPlan:
    unchanged: int = 0
    to_read: list[tuple[ScannedFile, RowState | None]] = field(default_factory=list)  # images
    videos: list[tuple[ScannedFile, RowState | None]] = field(default_factory=list)  # videos to read
    missing: dict[int, RowState] = field(default_factory=dict)  # stored rows no longer on disk
    # stored rows under a folder the scan could not list, to be marked failed `unreadable`
    unlisted: list[tuple[RowState, UnreadableFolder]] = field(default_factory=list)
    # (id, file) of unchanged images whose records were read from other sidecars (indexer.records)
    stale_records: list[tuple[int, ScannedFile]] = field(default_factory=list)

    @property
    def touched(self) -> dict[str, RowState]:
        """The stored rows this plan reads, removes or marks, by key."""
        rows = [r for _, r in self.to_read + self.videos if r is not None]
        rows += list(self.missing.values()) + [r for r, _ in self.unlisted]
        return {r.path: r for r in rows}


class StoredRows:
    """The stored rows a sync compares its scan with. Read from a store, they come as columns of
    what the comparison needs (a dict of 100k RowStates took 0.55 s, these columns 0.05 s), and
    the RowStates of the rows a plan touches are fetched afterwards, by key. `stored` maps each
    row's key to (size, mtime_ns, id, records_key); `unsettled` holds the keys of the rows a file
    of the same size and mtime does not leave alone (see _settled), `dead` those of rows not live
    (their records are not kept current)."""

    def __init__(self, store: Store | None = None, scope: Scope | None = None,
                 rows: Mapping[str, RowState] | None = None):
        self._store, self._rows = store, rows
        if rows is not None:  # given as RowStates (the ray engine, tests): no records known
            self.stored = {k: (r.size, r.mtime_ns, r.id, None) for k, r in rows.items()}
            self.unsettled = {k for k, r in rows.items() if not _settled(r.status, r.error)}
            self.dead = set(rows)
            self._keys = list(rows)
            return
        columns = {"id": [], "path": [], "size": [], "mtime_ns": [], "unsettled": [], "dead": [], "records_key": []}
        if store is not None and store.exists():
            where, params = scope.sql() if scope is not None else ("TRUE", [])
            with store.connect() as con:
                found = con.execute(f"SELECT id, path, size, mtime_ns, NOT {_SETTLED_SQL} AS unsettled, status <> 'ok' "
                                    f"AS dead, records_key FROM images WHERE {where}", params).fetchnumpy()
            columns = {name: values.tolist() for name, values in found.items()}
        paths = self._keys = columns["path"]
        self.stored = dict(zip(paths, zip(columns["size"], columns["mtime_ns"], columns["id"], columns["records_key"],
                                          strict=True), strict=True))
        self.unsettled = set(compress(paths, columns["unsettled"]))
        self.dead = set(compress(paths, columns["dead"]))

    @classmethod
    def read(cls, store: Store, scope: Scope | None = None) -> StoredRows:
        """The rows of `store` (none for a store not made yet), those `scope` covers if given."""
        return cls(store, scope)

    @classmethod
    def of(cls, rows: Mapping[str, RowState]) -> StoredRows:
        return cls(rows=rows)

    def __len__(self) -> int:
        return len(self._keys)

    def gone(self, seen: set[str]) -> list[str]:
        """The keys not in `seen`, in stored order."""
        return [key for key in self._keys if key not in seen]

    def states(self, keys: list[str]) -> dict[str, RowState]:
        """The RowStates of these keys' rows (those that exist)."""
        if self._rows is not None:
            return {k: self._rows[k] for k in keys if k in self._rows}
        keys = [k for k in keys if k in self.stored]
        if not keys:
            return {}
        with self._store.connect() as con:
            found = con.execute(f"SELECT {', '.join(_FIELDS)} FROM images WHERE path IN (SELECT unnest(?::VARCHAR[]))",
                                [keys]).fetchnumpy()
        states = [RowState(*values) for values in zip(*(found[name].tolist() for name in _FIELDS), strict=True)]
        return {row.path: row for row in states}

    def sizes(self) -> set[int]:
        """The sizes of the stored files whose embedding can be reused (see stored_sizes)."""
        if self._rows is not None:
            return {r.size for r in self._rows.values() if r.status in ("ok", "quarantined")}
        if self._store is None or not self._store.exists():
            return set()
        with self._store.connect() as con:
            found = con.execute("SELECT DISTINCT size FROM images WHERE status IN ('ok', 'quarantined')").fetchnumpy()
        return set(found["size"].tolist())


def plan_sync(scanned: list[ScannedFile], rows: StoredRows | Mapping[str, RowState], roots: list[str],
              unreadable: Iterable[UnreadableFolder] = (), scope: Scope | None = None) -> SyncPlan:
    """Files whose size and mtime match their row, and that can still be read, are unchanged;
    the rest must be read (an unreadable one then fails `unreadable`, as in a fresh index).
    An unchanged image whose sidecars changed since its records were read has them read again
    (`stale_records`; rows read from a store only). With a `scope` (a targeted sync) only the
    rows it covers can be missing: the rest were not looked at."""
    rows = rows if isinstance(rows, StoredRows) else StoredRows.of(rows)
    plan = SyncPlan()
    seen: set[str] = set()
    stored, unsettled, dead, changed = rows.stored, rows.unsettled, rows.dead, []
    for f in scanned:
        key = _key(f.path)
        seen.add(key)
        row = stored.get(key)
        if row is not None and row[0] == f.size and row[1] == f.mtime_ns and f.readable and key not in unsettled:
            plan.unchanged += 1
            if key not in dead and records_stale(row[3], f):
                plan.stale_records.append((row[2], f))
        else:
            changed.append((key, f))
    # rows of files gone from what was scanned: those under another root, or outside the scope
    # of a targeted sync, were not looked for
    gone = [key for key in rows.gone(seen) if any(is_within(key, r) for r in roots)
            and (scope is None or scope.covers(key))]
    states = rows.states([key for key, _ in changed] + gone)
    for key, f in changed:
        (plan.videos if has_video_extension(f.path) else plan.to_read).append((f, states.get(key)))
    # A folder that cannot be listed (permissions, a failing disk) most often still holds its
    # files: deleting their rows would lose ids, embeddings and duplicate decisions over what is
    # usually passing. The rows stay, failed `unreadable` (out of search), and are read again,
    # like any transient failure, once the folder can be listed.
    unlisted = [(encode_path(u.path)[0].removesuffix(NOT_UTF8_MARK), u) for u in unreadable]
    for key in gone:
        row = states[key]
        if row.status == "quarantined":
            continue  # moved aside on purpose, the row waits for an undo
        folder = next((u for prefix, u in unlisted if is_within(key, prefix)), None)
        if folder is None:
            plan.missing[row.id] = row
        elif not (row.status == "failed" and row.error == "unreadable"):
            plan.unlisted.append((row, folder))
    return plan


def stored_sizes(rows: StoredRows | Mapping[str, RowState]) -> set[int]:
    """The sizes of the stored files whose embedding can be reused: a file of another size
    cannot be a copy of one of them, so it certainly needs decoding."""
    return (rows if isinstance(rows, StoredRows) else StoredRows.of(rows)).sizes()


def reusable_hashes(store: Store, plan: SyncPlan) -> dict[str, int]:
    """Content hash -> id of a live row with that content, for the stored rows a file this plan
    reads may be a copy or a rename of (what an IndexRun's `hashes` start from): those of a size
    among these files', since the same bytes have the same size. A sync of one new photo then
    reads a few rows, not every row's hash (40 ms at 100k rows)."""
    sizes = sorted({f.size for f, _ in plan.to_read + plan.videos})
    if not sizes:
        return {}
    with store.connect() as con:
        found = con.execute("SELECT content_hash, id FROM images WHERE status = 'ok' AND content_hash IS NOT NULL "
                            "AND size IN (SELECT unnest(?::BIGINT[])) ORDER BY id", [sizes]).fetchnumpy()
    return dict(zip(found["content_hash"].tolist(), found["id"].tolist(), strict=True))


def _settled(status: str, error: str | None) -> bool:
    """Whether a row with an unchanged file needs nothing: a live row, or a failure that reading
    the same bytes again would repeat. A quarantined row whose file is back is read again."""
    return status == "ok" or (status == "failed" and error not in TRANSIENT_ERRORS)


# _settled in SQL, for rows read as columns (tests/indexer/test_scope.py holds the two equal)
_SETTLED_SQL = ("(status = 'ok' OR (status = 'failed' AND coalesce(error, '') NOT IN ("
                + ", ".join(f"'{e}'" for e in sorted(TRANSIENT_ERRORS)) + ")))")


def _key(path: str) -> str:
    return path if path.isascii() else encode_path(path)[0]

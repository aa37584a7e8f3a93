"""The store's DuckDB side: schema, manifest, and short transactions that log vector changes.

DuckDB is the source of truth (metadata and embeddings). Connections are held only for the
span of one read or one transaction so that read-only processes can open the file between
the writer's batches; a conflicting open is retried for a while.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, StoreError, StoreMismatchError, StoreMissingError, first_line
from ..extensions import has_video_extension
from ..faults import fault_point
from ..locations import default_store_dir
from .connections import connection

__all__ = [
    "Store", "RowState", "open_store", "SCHEMA_VERSION", "DB_NAME", "LIVE", "MTIME", "encode_path",
    "default_store_dir", "fetch_records", "SHARD_COLUMNS", "RECORD_COLUMNS",
]

SCHEMA_VERSION = 1
DB_NAME = "metadata.duckdb"

# The one spelling of "a row FAISS must hold", and of a row's modification time as a timestamp.
LIVE = "status = 'ok' AND embedding IS NOT NULL"
MTIME = "make_timestamp(mtime_ns // 1000)"
# Marks the key of a file name that is not UTF-8: NUL is the one character no real name holds,
# so no UTF-8 name can share the key of a non-UTF-8 one.
NOT_UTF8_MARK = "\x00"

# What the store's own cleanup moved (indexer.store.quarantine), per manifest: an undo trusts only these.
_QUARANTINE_TABLE = ("CREATE TABLE IF NOT EXISTS quarantine_moves (manifest VARCHAR NOT NULL, id BIGINT NOT NULL, "
                     "source VARCHAR NOT NULL, size BIGINT NOT NULL, content_hash VARCHAR);\n")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS manifest (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id BIGINT PRIMARY KEY,
    path VARCHAR NOT NULL UNIQUE,
    path_bytes BLOB,                -- the raw name when it is not valid UTF-8
    root VARCHAR NOT NULL,
    size BIGINT NOT NULL,
    mtime_ns BIGINT NOT NULL,
    content_hash VARCHAR,
    width INTEGER,
    height INTEGER,
    format VARCHAR,
    captured_at TIMESTAMP,
    camera VARCHAR,
    indexed_at TIMESTAMP NOT NULL,
    status VARCHAR NOT NULL,        -- 'ok', 'failed', or 'quarantined' (moved aside by a cleanup)
    error VARCHAR,                  -- failure reason category
    error_detail VARCHAR,
    warnings VARCHAR,
    embedding FLOAT[{dim}]
);
-- signatures for duplicate tiers (indexer.imaging.signatures); stores older than them gain the columns
ALTER TABLE images ADD COLUMN IF NOT EXISTS pixel_hash VARCHAR;
ALTER TABLE images ADD COLUMN IF NOT EXISTS orientation_hash BIGINT;
-- the model head's top-5 classes, best first (indexer.model.labels); NULL until labelled
ALTER TABLE images ADD COLUMN IF NOT EXISTS labels VARCHAR[];
ALTER TABLE images ADD COLUMN IF NOT EXISTS label_probs FLOAT[];
-- the photographer's records from XMP (indexer.records): rating -1..5, pick 'picked'/'rejected',
-- the files that belong to the image (indexer.store.companions); records_key says what they were read from
ALTER TABLE images ADD COLUMN IF NOT EXISTS rating INTEGER;
ALTER TABLE images ADD COLUMN IF NOT EXISTS pick VARCHAR;
ALTER TABLE images ADD COLUMN IF NOT EXISTS color_label VARCHAR;
ALTER TABLE images ADD COLUMN IF NOT EXISTS keywords VARCHAR[];
ALTER TABLE images ADD COLUMN IF NOT EXISTS companion_files VARCHAR[];
ALTER TABLE images ADD COLUMN IF NOT EXISTS records_note VARCHAR;
ALTER TABLE images ADD COLUMN IF NOT EXISTS records_key VARCHAR;
-- measured quality (indexer.imaging.quality): filled with the signatures, backfilled with them
ALTER TABLE images ADD COLUMN IF NOT EXISTS jpeg_quality INTEGER;
ALTER TABLE images ADD COLUMN IF NOT EXISTS sharpness REAL;
ALTER TABLE images ADD COLUMN IF NOT EXISTS clipped_shadows REAL;
ALTER TABLE images ADD COLUMN IF NOT EXISTS clipped_highlights REAL;
ALTER TABLE images ADD COLUMN IF NOT EXISTS detail REAL;
-- videos (indexer.imaging.video): a row per video whose embedding is its frames' normalised mean;
-- the frames themselves, with their times, in the frames table. kind follows the file's extension.
ALTER TABLE images ADD COLUMN IF NOT EXISTS kind VARCHAR DEFAULT 'image';
ALTER TABLE images ADD COLUMN IF NOT EXISTS duration REAL;
ALTER TABLE images ADD COLUMN IF NOT EXISTS fps REAL;
ALTER TABLE images ADD COLUMN IF NOT EXISTS codec VARCHAR;
ALTER TABLE images ADD COLUMN IF NOT EXISTS bitrate BIGINT;
CREATE TABLE IF NOT EXISTS frames (video_id BIGINT NOT NULL, t REAL NOT NULL, embedding FLOAT[{dim}] NOT NULL);
CREATE TABLE IF NOT EXISTS label_classes (class INTEGER PRIMARY KEY, name VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS vector_log (generation BIGINT NOT NULL, id BIGINT NOT NULL);
-- the user's duplicate decisions: ('not_duplicate', a, b) with a < b, or ('keep', id, NULL)
CREATE TABLE IF NOT EXISTS decisions (kind VARCHAR NOT NULL, a BIGINT NOT NULL, b BIGINT,
                                      decided_at TIMESTAMP NOT NULL);
""" + _QUARANTINE_TABLE

# Manifest keys that must match for embeddings to be comparable.
IDENTITY_KEYS = ("model_name", "preprocess", "dim", "metric", "weights_fingerprint")


def open_store(store_dir: str | os.PathLike | None = None, *, read_only: bool = True) -> Store:
    """The store at `store_dir`, else the default one (see locations.default_store_dir)."""
    store = Store(store_dir or default_store_dir(), read_only=read_only)
    if store.dir.exists() and not store.dir.is_dir():
        raise ConfigError(f"store={str(store.dir)!r} is a file, not a store directory: pass a folder",
                          parameter="store")
    return store


@dataclass(frozen=True)
class RowState:
    """What sync needs to know of a stored row."""

    id: int
    path: str
    root: str
    size: int
    mtime_ns: int
    content_hash: str | None
    status: str
    error: str | None


def encode_path(path: str) -> tuple[str, bytes | None]:
    """A UTF-8 key for any file name, one to one, plus the raw bytes when the name is not UTF-8."""
    try:
        path.encode("utf-8")
        return path, None
    except UnicodeEncodeError:
        raw = os.fsencode(path)
        return raw.decode("utf-8", "backslashreplace") + NOT_UTF8_MARK, raw


def disk_path(row: dict) -> str:
    """The name on disk of a row read with `path, path_bytes`: the raw bytes for a name that is
    not UTF-8 (its `path` is only a key)."""
    return os.fsdecode(row["path_bytes"]) if row.get("path_bytes") else row["path"]


def fetch_records(con, query: str, params=()) -> list[dict]:
    """Rows as dicts keyed by column name: callers never depend on column positions."""
    cursor = con.execute(query, params)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=False)) for row in cursor.fetchall()]


def _schema_shape(con) -> tuple[int, int]:
    """(tables, columns) of the store's schema: what a migration changes."""
    return con.execute("SELECT (SELECT count(*) FROM duckdb_tables()), (SELECT count(*) FROM duckdb_columns())"
                       ).fetchone()


class Store:
    """A store directory: metadata.duckdb, vectors.faiss and writer.lock."""

    def __init__(self, directory: str | os.PathLike, *, read_only: bool = True):
        self.dir = Path(directory).expanduser().absolute()
        self.db_path = self.dir / DB_NAME
        self.read_only = read_only

    def exists(self) -> bool:
        return self.db_path.is_file()

    def require(self) -> None:
        if not self.exists():
            raise StoreMissingError(
                f"no store at {self.dir}: build one with `vitsearch index FOLDER --store {self.dir}`")

    @contextlib.contextmanager
    def connect(self, *, file_access: bool = False) -> Iterator:
        """A connection for one read or one transaction (see indexer.store.connections). Reads are
        sandboxed (no file access) unless `file_access` is asked for, as an export does."""
        if self.read_only:
            self.require()
        with connection(self.db_path, read_only=self.read_only,
                        sandboxed=self.read_only and not file_access) as con:
            yield con

    def require_current_schema(self) -> None:
        """Refuse, with the fix, a store written by an older vitsearch that lacks columns readers use
        (a writer's initialize() adds them; readers never write)."""
        with self.connect() as con:
            have = {r[0] for r in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = 'images'").fetchall()}
        missing = [c for c in CURRENT_COLUMNS if c not in have]
        if missing:
            raise StoreMismatchError(
                f"store {self.dir} was written by an older vitsearch (no {', '.join(missing)} columns): run "
                f"`vitsearch index` on its folders once to bring it up to date (nothing is embedded again)")

    # ---- manifest ----

    def manifest(self) -> dict:
        if not self.exists():
            return {}
        with self.connect() as con:
            return _read_manifest(con)

    def initialize(self, identity: dict) -> dict:
        """Create the schema and manifest if new; refuse an incompatible existing store."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.connect() as con:
            before = _schema_shape(con)
            con.execute(_SCHEMA.format(dim=int(identity["dim"])))
            if _schema_shape(con) != before:
                # DDL goes into the data file at once rather than the write-ahead log, which a
                # writer's close no longer folds in (connections.py): a log that replays DDL is
                # where DuckDB has had bugs, and a new schema is written once.
                con.execute("CHECKPOINT")
            stored = _read_manifest(con)
            if not stored:
                fresh = dict(identity, schema_version=SCHEMA_VERSION, generation=0, log_floor=0, next_id=1,
                             created_at=time.strftime("%Y-%m-%d %H:%M:%S"))
                _write_manifest(con, fresh)
                return fresh
        check_compatible(stored, identity, self.dir)
        return stored

    def set_manifest(self, **values) -> None:
        with self.connect() as con:
            _write_manifest(con, values)

    # ---- reads ----

    def rows(self) -> dict[str, RowState]:
        fields = ", ".join(RowState.__dataclass_fields__)
        with self.connect() as con:
            records = fetch_records(con, f"SELECT {fields} FROM images")
        return {r["path"]: RowState(**r) for r in records}

    def records(self, columns: str, where: str = LIVE, params=(), *, order: str = "id",
                limit: int | None = None) -> list[dict]:
        """Rows of `images` as dicts: `columns` and `where` are the caller's fixed SQL text
        (never user input), `params` its values."""
        query = f"SELECT {columns} FROM images WHERE {where} ORDER BY {order}"
        if limit is not None:
            query += f" LIMIT {int(limit)}"
        with self.connect() as con:
            return fetch_records(con, query, params)

    def records_by_id(self, columns: str, ids) -> dict[int, dict]:
        """Live rows of these ids, keyed by id."""
        id_list = ", ".join(str(int(i)) for i in ids) or "NULL"  # integers only: safe to inline,
        rows = self.records(f"id, {columns}", f"{LIVE} AND id IN ({id_list})")  # and DuckDB then
        return {r["id"]: r for r in rows}                                       # uses its key index

    def live_ids(self) -> np.ndarray:
        with self.connect() as con:
            ids = con.execute(f"SELECT id FROM images WHERE {LIVE} ORDER BY id").fetchnumpy()["id"]
        return np.asarray(ids, dtype=np.int64)

    def embedding_chunks(self, chunk: int, ids: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All live (ids, embeddings) in id order, `chunk` rows at a time, so that a scan of
        millions of rows holds one chunk in memory. `ids`: live_ids() when the caller has them.
        Each chunk is an id range: DuckDB skips the row groups outside it by their min/max
        (rows are stored in id order), where ORDER BY id ... LIMIT would read every row each time."""
        ids = self.live_ids() if ids is None else ids
        for start in range(0, len(ids), chunk):
            low, high = int(ids[start]), int(ids[min(start + chunk, len(ids)) - 1])
            with self.connect() as con:
                result = con.execute(
                    f"SELECT id, embedding FROM images WHERE {LIVE} AND id BETWEEN ? AND ? ORDER BY id",
                    [low, high],
                ).fetchnumpy()
            found = np.asarray(result["id"], np.int64)
            if len(found):
                yield found, np.stack(result["embedding"]).astype(np.float32)

    def counts(self) -> dict:
        """Live images (photos), videos and their frames, failed files, failures by reason, files
        moved aside by a cleanup, and live rows that carry labels."""
        with self.connect() as con:
            (images, videos, failed, quarantined, labelled), = con.execute(
                f"SELECT count(*) FILTER ({LIVE} AND kind = 'image'), count(*) FILTER ({LIVE} AND kind = 'video'), "
                "count(*) FILTER (status = 'failed'), "
                f"count(*) FILTER (status = 'quarantined'), count(*) FILTER ({LIVE} AND labels IS NOT NULL) "
                "FROM images"
            ).fetchall()
            frames = con.execute(f"SELECT count(*) FROM frames WHERE video_id IN (SELECT id FROM images WHERE {LIVE})"
                                 ).fetchone()[0] if videos else 0
            reasons = con.execute(
                "SELECT error, count(*) FROM images WHERE status = 'failed' GROUP BY error ORDER BY 2 DESC, 1"
            ).fetchall()
        return {"images": images, "videos": videos, "frames": frames, "failed": failed, "failures": dict(reasons),
                "quarantined": quarantined, "labelled": labelled}

    def roots(self) -> list[str]:
        with self.connect() as con:
            return [r[0] for r in con.execute("SELECT DISTINCT root FROM images ORDER BY 1").fetchall()]

    def embeddings(self, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of live rows, all of them or those in `ids`."""
        query = f"SELECT id, embedding FROM images WHERE {LIVE}"
        with self.connect() as con:
            if ids is None:
                result = con.execute(query + " ORDER BY id").fetchnumpy()
            else:
                con.register("wanted", {"id": np.asarray(ids, dtype=np.int64)})
                result = con.execute(query + " AND id IN (SELECT id FROM wanted) ORDER BY id").fetchnumpy()
        found = np.asarray(result["id"], dtype=np.int64)
        vectors = np.stack(result["embedding"]).astype(np.float32) if len(found) else np.zeros((0, 0), np.float32)
        # an empty result has no width: callers reshape with the manifest's dim
        return found, vectors

    def changed_since(self, generation: int) -> np.ndarray:
        with self.connect() as con:
            ids = con.execute(
                "SELECT DISTINCT id FROM vector_log WHERE generation > ?", [generation]
            ).fetchnumpy()["id"]
        return np.asarray(ids, dtype=np.int64)

    def recorded_moves(self, manifest: str) -> dict[tuple[int, str], tuple] | None:
        """(id, source's key) -> (size, content_hash) of the moves a cleanup recorded under
        `manifest` (an image and the files that belong to it share its id); None when the store
        holds no record of it (a manifest from before such records, or not this store's)."""
        with self.connect() as con:
            known = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'quarantine_moves'").fetchone()
            if not known[0]:
                return None
            rows = con.execute("SELECT id, source, size, content_hash FROM quarantine_moves WHERE manifest = ?",
                               [manifest]).fetchall()
        return {(int(i), source): (int(size), digest) for i, source, size, digest in rows} or None

    # ---- writes ----

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One atomic batch of writes; vector changes bump the generation and are logged."""
        with self.connect() as con:
            manifest = _read_manifest(con)
            tx = Transaction(con, int(manifest["next_id"]))
            con.execute("BEGIN TRANSACTION")
            try:
                yield tx
                tx.flush_inserts()
                if tx.vector_changes:
                    generation = int(manifest["generation"]) + 1
                    con.execute(
                        "INSERT INTO vector_log SELECT ?, unnest(?::BIGINT[])",
                        [generation, sorted(tx.vector_changes)],
                    )
                    _write_manifest(con, {"generation": generation})
                _write_manifest(con, {"next_id": tx.next_id})
                fault_point("before_commit")
                con.execute("COMMIT")
            except BaseException as e:
                _rollback(con)
                if _is_duckdb_error(e):
                    raise StoreError(f"could not write {self.db_path}: {first_line(e)}. The last committed "
                                     "state is intact; fix this and run the same command again") from e
                raise
        fault_point("after_commit")

    def truncate_log(self, generation: int) -> None:
        """Forget vector changes the saved FAISS file already holds."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            con.execute("DELETE FROM vector_log WHERE generation <= ?", [generation])
            _write_manifest(con, {"log_floor": generation})
            con.execute("COMMIT")


# Measured quality a signature carries (indexer.imaging.quality), besides the header's jpeg_quality.
QUALITY_COLUMNS = ("sharpness", "clipped_shadows", "clipped_highlights", "detail")

# The photographer's records of a row (indexer.records), written together.
RECORD_COLUMNS = ("rating", "pick", "color_label", "keywords", "companion_files", "records_note", "records_key")

# What a video row holds besides an image's (indexer.imaging.video.VideoInfo), copied with it.
VIDEO_COLUMNS = ("duration", "fps", "codec", "bitrate")

# Columns that readers select, newest first: a store without them needs one index run.
CURRENT_COLUMNS = ("kind", "detail", "sharpness", "rating", "keywords", "companion_files", "labels", "pixel_hash")

# The images columns a cluster job writes in its Parquet shards (indexed_at is set on merge).
SHARD_COLUMNS = ("id", "path", "path_bytes", "root", "size", "mtime_ns", "content_hash", "width", "height",
                 "format", "captured_at", "camera", "status", "error", "error_detail", "warnings", "embedding",
                 "pixel_hash", "orientation_hash")


class Transaction:
    """Row writes inside Store.transaction(); ids whose vector changed are collected.

    New rows are buffered and inserted in one statement: a statement costs DuckDB ~1 ms, which
    would cap a GPU run near 1000 images/s. Any other write flushes them first, so writes
    still apply in the order they were made."""

    def __init__(self, con, next_id: int):
        self.con = con
        self.next_id = next_id
        self.vector_changes: set[int] = set()
        self._new_rows: list[dict] = []

    def _new_id(self) -> int:
        new_id = self.next_id
        self.next_id += 1
        return new_id

    def write_image(self, row_id: int | None, path: str, root: str, size: int, mtime_ns: int,
                    content_hash: str, info, vector: np.ndarray, signature=None) -> int:
        """Insert or replace a row with a fresh embedding (and its signatures, when computed)."""
        return self._upsert(row_id, path, root, size, mtime_ns, content_hash, {
            "width": info.width, "height": info.height, "format": info.format,
            "captured_at": info.captured_at, "camera": info.camera, "status": "ok",
            "error": None, "error_detail": None, "warnings": "; ".join(info.warnings) or None,
            "embedding": vector.astype(np.float32),
            "pixel_hash": signature.pixel_hash if signature else None,
            "orientation_hash": signature.orientation_hash if signature else None,
            "labels": None, "label_probs": None,  # a new embedding: labelled again after the batch
            "jpeg_quality": info.jpeg_quality, **_quality_columns(signature), **dict.fromkeys(VIDEO_COLUMNS),
        })

    def write_failure(self, row_id: int | None, path: str, root: str, size: int, mtime_ns: int,
                      content_hash: str | None, reason: str, detail: str) -> int:
        return self._upsert(row_id, path, root, size, mtime_ns, content_hash, {
            "width": None, "height": None, "format": None, "captured_at": None, "camera": None,
            "status": "failed", "error": reason, "error_detail": detail[:1000], "warnings": None,
            "embedding": None, "pixel_hash": None, "orientation_hash": None, "labels": None, "label_probs": None,
            "jpeg_quality": None, **_quality_columns(None), **dict.fromkeys(VIDEO_COLUMNS),
        })

    def write_video(self, row_id: int | None, path: str, root: str, size: int, mtime_ns: int,
                    content_hash: str, info, vector: np.ndarray, times, frame_vectors: np.ndarray) -> int:
        """Insert or replace a video's row (its embedding the frames' normalised mean) and its frames."""
        row_id = self._upsert(row_id, path, root, size, mtime_ns, content_hash, {
            "width": info.width, "height": info.height, "format": info.format,
            "captured_at": info.captured_at, "camera": None, "status": "ok",
            "error": None, "error_detail": None, "warnings": "; ".join(info.warnings) or None,
            "embedding": vector.astype(np.float32), "pixel_hash": None, "orientation_hash": None,
            "labels": None, "label_probs": None, "jpeg_quality": None, **_quality_columns(None),
            "duration": info.duration, "fps": info.fps, "codec": info.codec, "bitrate": info.bitrate,
        })
        self.flush_inserts()
        self.con.register("vitsearch_frames", {
            "video_id": np.full(len(times), row_id, np.int64), "t": np.asarray(times, np.float32),
            "embedding": _column(list(np.asarray(frame_vectors, np.float32)))})
        try:
            self.con.execute("INSERT INTO frames SELECT video_id, t, embedding FROM vitsearch_frames")
        finally:
            self.con.unregister("vitsearch_frames")
        return row_id

    def _upsert(self, row_id, path, root, size, mtime_ns, content_hash, fields: dict) -> int:
        name, raw = encode_path(path)
        values = {"path": name, "path_bytes": raw, "root": root, "size": size, "mtime_ns": mtime_ns,
                  "content_hash": content_hash, "kind": "video" if has_video_extension(path) else "image", **fields}
        if row_id is None:
            row_id = self._new_id()
            self._new_rows.append({"id": row_id, **values})
        else:
            self.flush_inserts()
            self._delete_frames([row_id])
            assignments = ", ".join(f"{column} = ?" for column in values)
            self.con.execute(
                f"UPDATE images SET indexed_at = current_localtimestamp(), {assignments} WHERE id = ?",
                (*values.values(), row_id),
            )
        self.vector_changes.add(row_id)
        return row_id

    def reserve_ids(self, count: int) -> list[int]:
        """Ids for rows to be written later (by a cluster job): fixed now, never handed out again."""
        return [self._new_id() for _ in range(count)]

    def merge_parquet(self, path: str, dim: int) -> list[int]:
        """Bulk-write the rows of a Parquet shard with the images table's columns (a row with an
        existing id replaces it); returns the ids written."""
        self.flush_inserts()
        shard = "read_parquet(?)"
        ids = [r[0] for r in self.con.execute(f"SELECT id FROM {shard}", [path]).fetchall()]
        self.con.execute(f"DELETE FROM images WHERE id IN (SELECT id FROM {shard})", [path])
        columns = ", ".join(SHARD_COLUMNS)
        selected = columns.replace("embedding", f"embedding::FLOAT[{int(dim)}]")
        self.con.execute(f"INSERT INTO images ({columns}, indexed_at) SELECT {selected}, current_localtimestamp() "
                         f"FROM {shard}", [path])
        self.vector_changes.update(ids)
        return ids

    def flush_inserts(self) -> None:
        """Insert the buffered new rows with one statement over numpy columns."""
        if not self._new_rows:
            return
        rows, self._new_rows = self._new_rows, []
        staged = {column: _column([row[column] for row in rows]) for column in rows[0]}
        self.con.register("vitsearch_new_rows", staged)
        try:  # DuckDB casts each column to the table's type on insert
            self.con.execute(
                f"INSERT INTO images (indexed_at, {', '.join(staged)}) "
                f"SELECT current_localtimestamp(), * FROM vitsearch_new_rows"
            )
        finally:
            self.con.unregister("vitsearch_new_rows")

    def touch(self, row_id: int, size: int, mtime_ns: int, *, revive: bool = False) -> int:
        """Same content, new stat: nothing to embed. `revive` brings a quarantined row back."""
        self.flush_inserts()
        self.con.execute("UPDATE images SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, row_id))
        if revive:
            self.set_status([row_id], "ok")
        return row_id

    def set_status(self, ids, status: str) -> None:
        """Quarantine rows ('quarantined': out of search, embedding kept) or bring them back ('ok')."""
        self.flush_inserts()
        ids = [int(i) for i in ids]
        if ids:
            self.con.execute("UPDATE images SET status = ? WHERE id IN (SELECT unnest(?::BIGINT[]))", [status, ids])
            self.vector_changes.update(ids)

    def record_moves(self, manifest: str, moves) -> None:
        """Remember what a cleanup is moving (objects with id, source, size, content_hash)."""
        self.flush_inserts()
        self.con.execute(_QUARANTINE_TABLE)
        self.con.executemany("INSERT INTO quarantine_moves VALUES (?, ?, ?, ?, ?)",
                             [[manifest, m.id, encode_path(m.source)[0], m.size, m.content_hash] for m in moves])

    def forget_moves(self, manifest: str, moves) -> None:
        """Moves that did not happen, or were undone (objects with id and source)."""
        self.flush_inserts()
        self.con.execute(_QUARANTINE_TABLE)
        self.con.executemany("DELETE FROM quarantine_moves WHERE manifest = ? AND id = ? AND source = ?",
                             [[manifest, int(m.id), encode_path(m.source)[0]] for m in moves])

    def set_signatures(self, ids, pixel_hashes, orientation_hashes, signatures=None, jpeg_qualities=None) -> None:
        """Fill in signatures (and, given the Signatures, the quality they measured) of rows
        indexed before they existed (no embedding changes)."""
        self.flush_inserts()
        staged = {"id": np.asarray(ids, np.int64), "pixel_hash": _column(list(pixel_hashes)),
                  "orientation_hash": _column(list(orientation_hashes))}
        quality = ""
        if signatures is not None:
            measured = [_quality_columns(s) for s in signatures]
            staged.update({c: _column([m[c] for m in measured]) for c in QUALITY_COLUMNS})
            staged["jpeg_quality"] = _column(list(jpeg_qualities))
            quality = ", " + ", ".join(f"{c} = s.{c}::{'INTEGER' if c == 'jpeg_quality' else 'REAL'}"
                                       for c in (*QUALITY_COLUMNS, "jpeg_quality"))
        self.con.register("vitsearch_signatures", staged)
        try:
            self.con.execute(
                "UPDATE images SET pixel_hash = s.pixel_hash, orientation_hash = s.orientation_hash::BIGINT"
                f"{quality} FROM vitsearch_signatures s WHERE images.id = s.id")
        finally:
            self.con.unregister("vitsearch_signatures")

    def set_records(self, records: list[dict]) -> None:
        """Store the photographer's records of rows (dicts with id and the RECORD_COLUMNS), no
        embedding changes."""
        self.flush_inserts()
        if not records:
            return
        staged = {"id": np.asarray([r["id"] for r in records], np.int64)}
        staged.update({c: _column([r[c] for r in records]) for c in RECORD_COLUMNS})
        self.con.register("vitsearch_records", staged)
        try:
            self.con.execute(
                "UPDATE images SET rating = r.rating::INTEGER, pick = r.pick::VARCHAR, "
                "color_label = r.color_label::VARCHAR, keywords = r.keywords::VARCHAR[], "
                "companion_files = r.companion_files::VARCHAR[], records_note = r.records_note::VARCHAR, "
                "records_key = r.records_key::VARCHAR FROM vitsearch_records r WHERE images.id = r.id")
        finally:
            self.con.unregister("vitsearch_records")

    def set_labels(self, ids, labels: list[list[str]], probs: np.ndarray) -> None:
        """Store each row's top classes (names, best first) and their probabilities."""
        self.flush_inserts()
        staged = {"id": np.asarray(ids, np.int64), "labels": _column(labels), "label_probs": _column(list(probs))}
        self.con.register("vitsearch_labels", staged)
        try:
            self.con.execute(
                "UPDATE images SET labels = l.labels::VARCHAR[], label_probs = l.label_probs::FLOAT[] "
                "FROM vitsearch_labels l WHERE images.id = l.id")
        finally:
            self.con.unregister("vitsearch_labels")

    def clear_signatures(self, fmt: str, min_side: int) -> int:
        """Forget the signatures of rows of this format at least `min_side` on both sides (their
        decoding changed; the backfill signs them again); returns how many."""
        self.flush_inserts()
        return self.con.execute(
            "UPDATE images SET pixel_hash = NULL, orientation_hash = NULL WHERE format = ? "
            "AND pixel_hash IS NOT NULL AND least(width, height) >= ?", [fmt, min_side]).fetchone()[0]

    def set_manifest(self, **values) -> None:
        """Manifest entries written with the rest of this transaction."""
        _write_manifest(self.con, values)

    def reset_labels(self, names, manifest: dict) -> None:
        """A new head: forget every row's labels and store its class names."""
        self.flush_inserts()
        self.con.execute("UPDATE images SET labels = NULL, label_probs = NULL WHERE labels IS NOT NULL")
        self.con.execute("DELETE FROM label_classes")
        self.con.execute("INSERT INTO label_classes SELECT unnest(range(len(?::VARCHAR[]))), unnest(?::VARCHAR[])",
                         [list(names), list(names)])
        _write_manifest(self.con, manifest)

    def move(self, row_id: int, path: str, root: str, size: int, mtime_ns: int) -> int:
        """A renamed or moved file keeps its id and embedding."""
        self.flush_inserts()
        name, raw = encode_path(path)
        self.con.execute(
            "UPDATE images SET path = ?, path_bytes = ?, root = ?, size = ?, mtime_ns = ? WHERE id = ?",
            (name, raw, root, size, mtime_ns, row_id),
        )
        return row_id

    def copy(self, source_id: int, row_id: int | None, path: str, root: str, size: int,
             mtime_ns: int) -> int:
        """A file with the same bytes as an indexed one: reuse its embedding and metadata."""
        self.flush_inserts()
        if row_id is not None:
            self.delete([row_id])
        new_id = self._new_id()
        name, raw = encode_path(path)
        copied = ("content_hash, width, height, format, captured_at, camera, status, error, error_detail, "
                  "warnings, embedding, pixel_hash, orientation_hash, labels, label_probs, jpeg_quality, kind, "
                  + ", ".join(QUALITY_COLUMNS + VIDEO_COLUMNS))
        self.con.execute(
            f"INSERT INTO images (id, path, path_bytes, root, size, mtime_ns, indexed_at, {copied}) "
            f"SELECT ?, ?, ?, ?, ?, ?, current_localtimestamp(), {copied} FROM images WHERE id = ?",
            (new_id, name, raw, root, size, mtime_ns, source_id),
        )
        self.con.execute("INSERT INTO frames SELECT ?, t, embedding FROM frames WHERE video_id = ?",
                         (new_id, source_id))
        self.vector_changes.add(new_id)
        return new_id

    def delete(self, ids) -> None:
        self.flush_inserts()
        ids = [int(i) for i in ids]
        if ids:
            self.con.execute("DELETE FROM images WHERE id IN (SELECT unnest(?::BIGINT[]))", [ids])
            self._delete_frames(ids)
            self.vector_changes.update(ids)

    def _delete_frames(self, ids: list[int]) -> None:
        self.con.execute("DELETE FROM frames WHERE video_id IN (SELECT unnest(?::BIGINT[]))", [ids])


def _quality_columns(signature) -> dict:
    quality = signature.quality if signature is not None else None
    return {c: getattr(quality, c) if quality is not None else None for c in QUALITY_COLUMNS}


def _rollback(con) -> None:
    """Undo an open transaction. After a failed COMMIT DuckDB has none left to roll back: its
    "cannot rollback" must not hide the error that matters (a full disk, say)."""
    try:
        con.execute("ROLLBACK")
    except Exception:  # noqa: BLE001 - the original error is the one to report
        pass


def _is_duckdb_error(error: BaseException) -> bool:
    return type(error).__module__.split(".")[0] in ("duckdb", "_duckdb")


def _column(values: list) -> np.ndarray:
    """One column for DuckDB's numpy scan: an object array keeps None, bytes and vectors as they are."""
    column = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        column[i] = value
    return column


def _read_manifest(con) -> dict:
    try:
        rows = con.execute("SELECT key, value FROM manifest").fetchall()
    except Exception:  # noqa: BLE001 - a brand-new file has no table yet
        return {}
    return {k: json.loads(v) for k, v in rows}


def _write_manifest(con, values: dict) -> None:
    con.executemany(
        "INSERT OR REPLACE INTO manifest VALUES (?, ?)",
        [(k, json.dumps(v, sort_keys=True)) for k, v in values.items()],
    )


def check_compatible(stored: dict, wanted: dict, directory) -> None:
    """Refuse to mix embeddings from another model, preprocessing or weights."""
    if int(stored.get("schema_version", 0)) > SCHEMA_VERSION:
        raise StoreMismatchError(
            f"store {directory} has schema version {stored['schema_version']}, newer than this "
            f"vitsearch understands ({SCHEMA_VERSION}); upgrade vitsearch"
        )
    for key in IDENTITY_KEYS:
        if key in wanted and stored.get(key) != wanted[key]:
            what = "weights" if key == "weights_fingerprint" else key
            raise StoreMismatchError(
                f"store {directory} was built with a different {what} "
                f"(store: {_short(stored.get(key), stored, key)}; now: {_short(wanted[key], wanted, key)}). "
                f"Embeddings would not be comparable: index into a new store with --store NEW_DIR, "
                f"or delete {directory} and re-index"
            )


def _short(value, manifest: dict, key: str) -> str:
    if key == "weights_fingerprint":
        return str(manifest.get("weights_source", value))
    return json.dumps(value)[:120]

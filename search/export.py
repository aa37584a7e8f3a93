"""Export the indexed images and their embeddings to Parquet for pandas, polars or another store."""

from __future__ import annotations

import os
from pathlib import Path

from indexer.connections import close_lease
from indexer.store import Store, default_store_dir

__all__ = ["export_parquet", "EXPORT_COLUMNS"]

EXPORT_COLUMNS = (
    "id, path, embedding, width, height, size, "
    "make_timestamp(mtime_ns // 1000) AS mtime, format, captured_at, camera, content_hash, "
    "root, indexed_at"
)


def export_parquet(out: str | os.PathLike, store: str | os.PathLike | None = None) -> int:
    """Write one row per indexed image to `out` (atomically); returns the row count."""
    db = Store(store or default_store_dir())
    out = Path(out).expanduser().absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    literal = str(temporary).replace("'", "''")  # COPY takes no parameters; quote by doubling
    close_lease(str(db.db_path))  # a fresh connection: filters switch file access off on theirs
    with db.connect() as con:
        con.execute(
            f"COPY (SELECT {EXPORT_COLUMNS} FROM images WHERE status = 'ok' ORDER BY id) "
            f"TO '{literal}' (FORMAT parquet)"
        )
        (count,) = con.execute("SELECT count(*) FROM images WHERE status = 'ok'").fetchone()
    os.replace(temporary, out)
    return int(count)

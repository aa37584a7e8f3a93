"""Export the indexed images and their embeddings to Parquet for pandas, polars or another store."""

from __future__ import annotations

import os
from pathlib import Path

from ..indexer.store.store import LIVE, MTIME, open_store

__all__ = ["export_parquet", "EXPORT_COLUMNS"]

EXPORT_COLUMNS = (
    f"id, path, embedding, width, height, size, {MTIME} AS mtime, format, captured_at, camera, "
    "content_hash, root, indexed_at, labels, label_probs, rating, pick, color_label, keywords, companion_files, "
    "jpeg_quality, sharpness, clipped_shadows, clipped_highlights, detail, kind, duration, fps, codec, bitrate"
)


def export_parquet(out: str | os.PathLike, store_dir: str | os.PathLike | None = None) -> int:
    """Write one row per indexed image to `out` (atomically); returns the row count."""
    store = open_store(store_dir)
    out = Path(out).expanduser().absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    literal = str(temporary).replace("'", "''")  # COPY takes no parameters; quote by doubling
    with store.connect(file_access=True) as con:  # COPY writes a file: the one unsandboxed read
        con.execute(
            f"COPY (SELECT {EXPORT_COLUMNS} FROM images WHERE {LIVE} ORDER BY id) "
            f"TO '{literal}' (FORMAT parquet)"
        )
        (count,) = con.execute(f"SELECT count(*) FROM images WHERE {LIVE}").fetchone()
    os.replace(temporary, out)
    return int(count)

"""What a store holds: counts, failures, model and index facts (`vitsearch info`)."""

from __future__ import annotations

import os

from indexer.store import Store, default_store_dir
from indexer.vectors import open_vector_index

__all__ = ["store_info", "list_failures"]


def store_info(store: str | os.PathLike | None = None) -> dict:
    """Counts and facts of a store, read-only; the FAISS count is after any in-memory repair."""
    db = Store(store or default_store_dir())
    db.require()
    manifest = db.manifest()
    with db.connect() as con:
        images, failed = con.execute(
            "SELECT count(*) FILTER (status = 'ok' AND embedding IS NOT NULL), "
            "count(*) FILTER (status = 'failed') FROM images"
        ).fetchone()
        reasons = con.execute(
            "SELECT error, count(*) FROM images WHERE status = 'failed' GROUP BY error ORDER BY 2 DESC, 1"
        ).fetchall()
    vectors = open_vector_index(db, manifest)
    return {
        "images": images,
        "vectors": vectors.count,
        "failed": failed,
        "failures": dict(reasons),
        "model": manifest["model_name"],
        "weights": manifest["weights_source"],
        "index_type": vectors.index_type,
        "index_recall_at_10": vectors.choice.recall,
        "index_params": vectors.choice.params,
        "dim": manifest["dim"],
        "metric": manifest["metric"],
        "store": str(db.dir),
        "generation": manifest["generation"],
        "index_repair": vectors.repair,
    }


def list_failures(store: str | os.PathLike | None = None, limit: int = 1000) -> list[tuple[str, str, str]]:
    """(path, reason, detail) of failed files, newest first."""
    with Store(store or default_store_dir()).connect() as con:
        return con.execute(
            "SELECT path, error, error_detail FROM images WHERE status = 'failed' "
            "ORDER BY indexed_at DESC, path LIMIT ?", [limit]
        ).fetchall()

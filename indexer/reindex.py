"""Rebuild the FAISS index from the stored embeddings, without running the model."""

from __future__ import annotations

import os

from .ann import INDEX_TYPES
from .errors import ConfigError
from .lock import WriterLock
from .store import Store, default_store_dir
from .vectors import VectorIndex, clean_leftovers, rebuild, save_vector_index

__all__ = ["reindex"]


def reindex(store: str | os.PathLike | None = None, *, index_type: str = "auto",
            memory_budget: int | None = None) -> VectorIndex:
    """Rebuild with `index_type` ("auto" lets the collection size and budget choose) and keep
    that preference for later index runs."""
    if index_type != "auto" and index_type not in INDEX_TYPES:
        raise ConfigError(f"unknown index type {index_type!r}; choose auto or one of {', '.join(INDEX_TYPES)}")
    db = Store(store or default_store_dir(), read_only=False)
    db.require()
    with WriterLock(db.dir / "writer.lock"):
        settings = {"index_type": index_type}
        if memory_budget:
            settings["memory_budget"] = int(memory_budget)
        db.set_manifest(**settings)
        manifest = db.manifest()
        clean_leftovers(db)
        vectors = rebuild(db, manifest)
        save_vector_index(db, vectors)
        db.truncate_log(vectors.generation)
    return vectors

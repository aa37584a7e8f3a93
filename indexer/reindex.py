"""Rebuild the FAISS index from the stored embeddings, without running the model."""

from __future__ import annotations

import os

from .errors import ConfigError
from .store.ann import INDEX_TYPES
from .store.lock import WriterLock
from .store.store import open_store
from .store.vectors import VectorIndex, clean_leftovers, sync_and_save

__all__ = ["reindex"]


def reindex(store_dir: str | os.PathLike | None = None, *, index_type: str = "auto",
            memory_budget: int | None = None) -> VectorIndex:
    """Rebuild with `index_type` ("auto" lets the collection size and budget choose) and keep
    that preference for later index runs."""
    if index_type != "auto" and index_type not in INDEX_TYPES:
        raise ConfigError(f"unknown index type {index_type!r}; choose auto or one of {', '.join(INDEX_TYPES)}")
    store = open_store(store_dir, read_only=False)
    store.require()
    with WriterLock(store.dir / "writer.lock"):
        settings = {"index_type": index_type}
        if memory_budget:
            settings["memory_budget"] = int(memory_budget)
        store.set_manifest(**settings)
        clean_leftovers(store)
        return sync_and_save(store, None, rebuild_as=index_type)  # "auto": chosen from size and budget

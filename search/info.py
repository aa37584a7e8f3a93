"""What a store holds: counts, failures, model and index facts (`vitsearch info`)."""

from __future__ import annotations

import os

from .index import ImageIndex

__all__ = ["store_info", "list_failures"]


def store_info(store_dir: str | os.PathLike | None = None) -> dict:
    """Counts and facts of a store, read-only; the FAISS count is after any in-memory repair."""
    return ImageIndex.open(store_dir).info()


def list_failures(store_dir: str | os.PathLike | None = None, limit: int = 1000) -> list[tuple[str, str, str]]:
    """(path, reason, detail) of failed files, newest first."""
    return ImageIndex.open(store_dir).failures(limit)

"""Fill in the duplicate signatures of rows that lack them (stores indexed before signatures
existed, or images decoded on a GPU): a CPU decode of each file, never a model pass."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from .images import load_image, read_image_bytes
from .scan import is_within
from .store import LIVE, Store

__all__ = ["backfill_signatures", "BACKFILL_CHUNK"]

BACKFILL_CHUNK = 256  # rows per transaction: a crash loses at most this much decoding


def backfill_signatures(store: Store, roots: list[str], draft_size: int | None, *, workers: int = 2,
                        progress: Callable[[int, int], None] | None = None) -> int:
    """Sign the live rows under `roots` that have no signature; returns how many were signed.
    A file whose bytes no longer match its row is left for the next sync to re-index."""
    rows = [r for r in store.records("id, path, content_hash", f"{LIVE} AND pixel_hash IS NULL")
            if any(is_within(r["path"], root) for root in roots)]
    signed = 0
    with ThreadPoolExecutor(workers, thread_name_prefix="vitsearch-sign") as pool:
        for start in range(0, len(rows), BACKFILL_CHUNK):
            chunk = rows[start:start + BACKFILL_CHUNK]
            results = [s for s in pool.map(lambda r: _sign(r, draft_size), chunk) if s is not None]
            if results:
                with store.transaction() as tx:
                    tx.set_signatures(*zip(*results, strict=True))
            signed += len(results)
            if progress:
                progress(start + len(chunk), len(rows))
    return signed


def _sign(row: dict, draft_size: int | None):
    try:
        data = read_image_bytes(row["path"])
        if hashlib.blake2b(data, digest_size=16).hexdigest() != row["content_hash"]:
            return None
        signature = load_image(data, draft_size=draft_size, signature=True).signature
    except Exception:  # noqa: BLE001 - an unreadable file keeps its row; sync records what is wrong
        return None
    return row["id"], signature.pixel_hash, signature.orientation_hash

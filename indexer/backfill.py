"""Fill in the duplicate signatures of rows that lack them (stores indexed before signatures
existed, images decoded on a GPU, or signatures made stale by a change in how files decode):
a CPU decode of each file, never a model pass."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

from .imaging.images import load_image, read_image_bytes
from .report import Progress
from .scan import is_within
from .store.store import LIVE, Store

__all__ = ["backfill_signatures", "BACKFILL_CHUNK", "SIGNATURE_VERSION", "expire_stale_signatures"]

BACKFILL_CHUNK = 256  # rows per transaction: a crash loses at most this much decoding
# How decoded pixels (which pixel_hash covers) are made; a store records the version its rows
# were signed with. 2: in default mode a large RGB PNG is shrunk while it decodes (fast_decode).
SIGNATURE_VERSION = 2


def expire_stale_signatures(store: Store, manifest: dict, draft_size: int | None) -> int:
    """Clear the signatures that an older way of decoding made and this one would make
    differently, so that backfill_signatures signs them again, and record the version; one
    transaction (a crash leaves either the old signatures or the cleared ones, which the next
    run signs). Returns how many rows were cleared."""
    if int(manifest.get("signature_version", 1)) >= SIGNATURE_VERSION:
        return 0
    with store.transaction() as tx:
        # version 1 -> 2: PNGs at least twice the draft size (smaller ones decode as before)
        cleared = tx.clear_signatures("PNG", 2 * draft_size) if draft_size else 0
        tx.set_manifest(signature_version=SIGNATURE_VERSION)
    manifest["signature_version"] = SIGNATURE_VERSION
    return cleared


def backfill_signatures(store: Store, roots: list[str], draft_size: int | None, *, workers: int = 2,
                        progress: Progress | None = None) -> int:
    """Sign the live rows under `roots` that have no signature; returns how many were signed.
    A file whose bytes no longer match its row is left for the next sync to re-index."""
    unsigned = f"{LIVE} AND kind = 'image' AND (pixel_hash IS NULL OR sharpness IS NULL)"
    rows = [r for r in store.records("id, path, content_hash", unsigned)
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
                progress("signatures", start + len(chunk), len(rows))
    return signed


def _sign(row: dict, draft_size: int | None):
    try:
        data = read_image_bytes(row["path"])
        if hashlib.blake2b(data, digest_size=16).hexdigest() != row["content_hash"]:
            return None
        loaded = load_image(data, draft_size=draft_size, signature=True)
    except Exception:  # noqa: BLE001 - an unreadable file keeps its row; sync records what is wrong
        return None
    signature = loaded.signature
    return row["id"], signature.pixel_hash, signature.orientation_hash, signature, loaded.info.jpeg_quality

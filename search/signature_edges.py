"""Duplicate edges that need no embedding: same bytes, same decoded pixels, and rotated or
mirrored copies found by multi-index hashing over the stored orientation hashes. Photos only:
videos carry no signatures and group by their frames (search.video_dupes)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..indexer.imaging.signatures import TRANSFORMS, hamming, transformed_hashes
from ..indexer.store.store import LIVE, Store

__all__ = ["SignatureEdges", "signature_edges", "MAX_TRANSFORM_BITS", "LAYOUT_BITS"]

# Orientation hashes this many bits apart (of 63) still match: re-encoding flips a few signs.
# Unrelated photos sit near 31 bits apart; a light crop moves a handful of bits, so a pair within
# LAYOUT_BITS that the model also finds similar is a near-duplicate.
# Four 16-bit hash tables find every pair within 3 bits (one quarter must then agree exactly).
MAX_TRANSFORM_BITS = 3
LAYOUT_BITS = 8
_HASH_TABLES, _TABLE_BITS = 4, 16
_QUERY_CHUNK = 200_000


@dataclass
class SignatureEdges:
    """Edge lists (a, b) per kind; transform edges also name the transform T with T(a) ~ b."""

    identical: tuple[np.ndarray, np.ndarray]
    same_pixels: tuple[np.ndarray, np.ndarray]
    transformed: tuple[np.ndarray, np.ndarray, np.ndarray]  # a, b, index into TRANSFORM_NAMES
    signed: int  # live rows that have signatures
    unsigned: int  # live rows still waiting for theirs (see indexer.backfill)
    hashed_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # sorted
    hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # their orientation hashes

    def layout_distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Bits between the orientation hashes of pairs as they stand (64 where one has none)."""
        if not len(a):
            return np.zeros(0, np.int64)
        ia = np.clip(np.searchsorted(self.hashed_ids, a), 0, max(len(self.hashed_ids) - 1, 0))
        ib = np.clip(np.searchsorted(self.hashed_ids, b), 0, max(len(self.hashed_ids) - 1, 0))
        if not len(self.hashed_ids):
            return np.full(len(a), 64)
        known = (self.hashed_ids[ia] == a) & (self.hashed_ids[ib] == b)
        return np.where(known, hamming(self.hashes[ia], self.hashes[ib]), 64)


TRANSFORM_NAMES = tuple(TRANSFORMS)


def signature_edges(store: Store, *, transforms: bool = True) -> SignatureEdges:
    with store.connect() as con:
        columns = {r[0] for r in con.execute("DESCRIBE images").fetchall()}
        signed = "pixel_hash" in columns
        selected = "id, content_hash" + (", pixel_hash, orientation_hash" if signed else "")
        table = con.execute(f"SELECT {selected} FROM images WHERE {LIVE} AND kind = 'image' ORDER BY id").fetchnumpy()
    ids = np.asarray(table["id"], np.int64)
    identical = _same_value_chains(ids, table["content_hash"])
    if not signed:  # a store older than signatures, opened read-only: its next index run adds them
        empty = np.zeros(0, np.int64)
        return SignatureEdges(identical, (empty, empty), (empty, empty, empty), 0, len(ids))
    # DuckDB hands a column with NULLs over masked: a masked entry is no hash, not a shared one
    pixel = np.ma.getdata(table["pixel_hash"])
    has_pixel = ~np.ma.getmaskarray(table["pixel_hash"]) & np.array([p is not None for p in pixel], bool)
    same_pixels = _same_value_chains(ids[has_pixel], pixel[has_pixel])
    orientation = np.ma.getdata(table["orientation_hash"])
    has_hash = ~np.ma.getmaskarray(table["orientation_hash"])
    transformed = _transform_matches(ids[has_hash], orientation[has_hash].astype(np.int64)) if transforms \
        else (np.zeros(0, np.int64),) * 3
    return SignatureEdges(identical, same_pixels, transformed, int(has_pixel.sum()), int((~has_pixel).sum()),
                          ids[has_hash], orientation[has_hash].astype(np.int64))


def _same_value_chains(ids: np.ndarray, values) -> tuple[np.ndarray, np.ndarray]:
    """Edges linking the ids that share a value, as chains (n - 1 edges for n equal values)."""
    if len(ids) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    values = np.asarray(values, dtype=object).astype(str)
    order = np.lexsort((ids, values))
    ordered_values, ordered_ids = values[order], ids[order]
    same = ordered_values[1:] == ordered_values[:-1]
    return ordered_ids[:-1][same], ordered_ids[1:][same]


def _transform_matches(ids: np.ndarray, hashes: np.ndarray):
    """Pairs (a, b, t) where transform t of a's hash is within MAX_TRANSFORM_BITS of b's, and a
    and b are not already alike as they stand (that is a plain near-duplicate, not a transform)."""
    empty = np.zeros(0, np.int64)
    if len(ids) < 2:
        return empty, empty, empty
    import faiss

    table = faiss.IndexBinaryMultiHash(64, _HASH_TABLES, _TABLE_BITS)
    table.add(_codes(hashes))
    parts_a, parts_b, parts_t = [], [], []
    for t, name in enumerate(TRANSFORM_NAMES):
        for start in range(0, len(ids), _QUERY_CHUNK):
            moved = transformed_hashes(hashes[start:start + _QUERY_CHUNK], name)
            limits, _, found = table.range_search(_codes(moved), MAX_TRANSFORM_BITS + 1)
            counts = np.diff(limits.astype(np.int64))
            a = np.repeat(np.arange(start, start + len(moved)), counts)
            keep = a != found
            parts_a.append(a[keep])
            parts_b.append(found[keep].astype(np.int64))
            parts_t.append(np.full(int(keep.sum()), t))
    a, b, t = np.concatenate(parts_a), np.concatenate(parts_b), np.concatenate(parts_t)
    as_they_stand = hamming(hashes[a], hashes[b]) <= MAX_TRANSFORM_BITS if len(a) else np.zeros(0, bool)
    a, b, t = a[~as_they_stand], b[~as_they_stand], t[~as_they_stand]
    return ids[a], ids[b], t


def _codes(hashes: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(hashes, np.int64)).view(np.uint8).reshape(-1, 8)


"""The collection as a whole: a 2-D map of every image, and how unusual each image is.

Map: PCA of the stored embeddings to two dimensions, computed in bounded memory (one pass for
the mean and the 512x512 covariance, one to project, `CHUNK` rows at a time) and cached beside
the store until its generation changes. Outliers: each image's uniqueness is the weighted
cosine distance to its nearest neighbours (weights 0.6, 0.3, 0.1 for the first three, as
FiftyOne's uniqueness weighs them): an image unlike any other scores high.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..indexer.store import Store

__all__ = ["MapPoint", "map_positions", "uniqueness", "CHUNK", "NEIGHBOUR_WEIGHTS", "MAP_CACHE"]

CHUNK = 65_536  # rows held at once: 128 MB of float32 embeddings
NEIGHBOUR_WEIGHTS = (0.6, 0.3, 0.1)
MAP_CACHE = "map-cache.npz"


@dataclass(frozen=True)
class MapPoint:
    id: int
    path: str
    x: float
    y: float


def map_positions(store: Store, generation: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, (n, 2) positions) of every live image, from the cache when it is of `generation`."""
    cache = store.dir / MAP_CACHE
    try:
        with np.load(cache) as saved:
            if int(saved["generation"]) == generation:
                return saved["ids"], saved["xy"]
    except (OSError, KeyError, ValueError):
        pass  # no cache, or an unreadable one: compute again
    ids, xy = _pca_positions(store)
    _save_atomically(cache, generation=np.int64(generation), ids=ids, xy=xy)
    return ids, xy


def _pca_positions(store: Store) -> tuple[np.ndarray, np.ndarray]:
    count, total, outer = 0, None, None
    for _, vectors in store.embedding_chunks(CHUNK):
        v = vectors.astype(np.float64)
        total = v.sum(axis=0) if total is None else total + v.sum(axis=0)
        outer = v.T @ v if outer is None else outer + v.T @ v
        count += len(v)
    if not count:
        return np.zeros(0, np.int64), np.zeros((0, 2), np.float32)
    mean = total / count
    covariance = outer / count - np.outer(mean, mean)
    _, vectors = np.linalg.eigh(covariance)
    axes = vectors[:, ::-1][:, :2]  # the two directions of largest variance
    axes *= np.sign(axes[np.argmax(np.abs(axes), axis=0), [0, 1]])  # a fixed orientation per run
    ids, positions = [], []
    for chunk_ids, chunk in store.embedding_chunks(CHUNK):
        ids.append(chunk_ids)
        positions.append(((chunk - mean) @ axes).astype(np.float32))
    return np.concatenate(ids), np.concatenate(positions)


def _save_atomically(path, **arrays) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
    try:
        np.savez(temporary, **arrays)
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)  # a read-only store: the map is computed, not cached


def uniqueness(index) -> tuple[np.ndarray, np.ndarray]:
    """(ids, scores) for every vector in `index` (a search.ImageIndex): the weighted cosine
    distance to its nearest other images; higher is more unusual."""
    from ..indexer.ann import search_parameters

    store, faiss_index = index.store, index.vectors.index
    ids_out, scores_out = [], []
    k = min(len(NEIGHBOUR_WEIGHTS), max(len(index) - 1, 0))
    weights = np.asarray(NEIGHBOUR_WEIGHTS[:k], np.float64)
    params = search_parameters(faiss_index, index.vectors.choice)
    for ids, vectors in store.embedding_chunks(CHUNK):
        if k == 0:
            ids_out.append(ids)
            scores_out.append(np.zeros(len(ids), np.float32))
            continue
        scores, found = faiss_index.search(vectors, k + 1, params=params)
        distances = np.empty((len(ids), k))
        for row, (own, row_scores, row_ids) in enumerate(zip(ids, scores, found, strict=True)):
            others = row_scores[(row_ids != own) & (row_ids >= 0)][:k]  # itself is usually first
            others = np.pad(others, (0, k - len(others)), constant_values=others[-1] if len(others) else 0.0)
            distances[row] = 1.0 - others
        ids_out.append(ids)
        scores_out.append((distances @ weights / weights.sum()).astype(np.float32))
    if not ids_out:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    return np.concatenate(ids_out), np.concatenate(scores_out)

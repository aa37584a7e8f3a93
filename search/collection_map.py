"""The collection as a whole: a 2-D map of every image, and how unusual each image is.

Map: UMAP of the stored embeddings (cosine, through umap-learn, the `map` extra) up to
UMAP_MAX_IMAGES images; past that, or without umap-learn, PCA to two dimensions, computed in
bounded memory (one pass for the mean and the 512x512 covariance, one to project, `CHUNK` rows at
a time). Either is cached in the user's cache (never in the store: readers do not write there)
until the store's generation changes.

Outliers: each image's uniqueness is the weighted cosine distance to its nearest neighbours
(weights 0.6, 0.3, 0.1 for the first three, as FiftyOne's uniqueness weighs them): an image
unlike any other scores high.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..indexer.locations import cache_root
from ..indexer.store.store import Store

__all__ = ["MapPoint", "map_positions", "map_cache_path", "uniqueness", "umap_available", "CHUNK",
           "NEIGHBOUR_WEIGHTS", "UMAP_MAX_IMAGES", "METHODS"]

CHUNK = 65_536  # rows held at once: 128 MB of float32 embeddings
NEIGHBOUR_WEIGHTS = (0.6, 0.3, 0.1)
METHODS = ("auto", "umap", "pca")
# UMAP holds every embedding and its neighbour graph in memory (~0.4 GB at this size) and takes
# minutes on a laptop; past it the map is PCA, whose memory does not grow with the collection.
UMAP_MAX_IMAGES = 100_000
UMAP_MIN_IMAGES = 5  # fewer: nothing to lay out, PCA places them


@dataclass(frozen=True)
class MapPoint:
    id: int
    path: str
    x: float
    y: float


def umap_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("umap") is not None


def map_positions(store: Store, generation: int, method: str = "auto") -> tuple[np.ndarray, np.ndarray, str]:
    """(ids, (n, 2) positions, the method used) of every live image, from the cache when it is
    of `generation` and of the method asked for. "auto": UMAP when umap-learn is installed and
    the store holds at most UMAP_MAX_IMAGES images, else PCA."""
    from ..indexer.errors import ConfigError

    if method not in METHODS:
        raise ConfigError(f"method={method!r} is not one of {', '.join(METHODS)}", parameter="method")
    if method == "umap" and not umap_available():
        raise ConfigError("method='umap' needs umap-learn: pip install 'vitsearch[map]'", parameter="method")
    count = store.counts()["images"]
    if method == "auto":
        method = "umap" if umap_available() and count <= UMAP_MAX_IMAGES else "pca"
    if method == "umap" and count < UMAP_MIN_IMAGES:
        method = "pca"
    cache = map_cache_path(store)
    try:
        with np.load(cache) as saved:
            if int(saved["generation"]) == generation and str(saved["method"]) == method:
                return saved["ids"], saved["xy"], method
    except (OSError, KeyError, ValueError):
        pass  # no cache, or an unreadable one: compute again
    ids, xy = _umap_positions(store) if method == "umap" else _pca_positions(store)
    _save_atomically(cache, generation=np.int64(generation), ids=ids, xy=xy, method=np.str_(method))
    return ids, xy, method


def map_cache_path(store: Store) -> Path:
    """The cached layout of this store: named by its real path and creation time, so that a
    store built anew at the same place never reads the old one's map."""
    key = f"{os.path.realpath(store.dir)}\0{store.manifest().get('created_at', '')}"
    return cache_root() / "maps" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"


def _umap_positions(store: Store) -> tuple[np.ndarray, np.ndarray]:
    import warnings

    import umap

    ids, vectors = store.embeddings()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fixed random_state turns parallelism off, and says so
        # 15 neighbours (UMAP's default) once there are enough images; a small set keeps its local structure
        layout = umap.UMAP(n_neighbors=min(15, max(2, len(ids) // 4)), metric="cosine", init="pca", random_state=0)
        return ids, layout.fit_transform(vectors).astype(np.float32)


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


def _save_atomically(path: Path, **arrays) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}.npz")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(temporary, **arrays)
        os.replace(temporary, path)
    except OSError:
        temporary.unlink(missing_ok=True)  # a read-only cache: the map is computed, not cached


def uniqueness(index) -> tuple[np.ndarray, np.ndarray]:
    """(ids, scores) for every vector in `index` (a search.ImageIndex): the weighted cosine
    distance to its nearest other images; higher is more unusual."""
    from ..indexer.store.ann import search_parameters

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

"""Index choice and build: exact flat search while cheap, else IVF sized to a memory budget,
with its search depth tuned at build time to reach a recall target on held-out queries."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .ondisk import write_lists

__all__ = [
    "INDEX_TYPES", "IndexChoice", "choose_index_type", "build_ann", "build_ann_streamed", "new_index", "index_ids",
    "set_search_depth", "search_parameters", "measure_recall", "exact_neighbours",
    "DEFAULT_MEMORY_BUDGET", "FLAT_MAX", "SMALL_SUBSET", "IVF_MIN_VECTORS", "bytes_per_vector", "lists_on_disk",
    "choose_layout", "LayeredIndex",
]

INDEX_TYPES = ("flat", "ivf-flat", "ivf-sq8", "ivf-pq")
FLAT_MAX = 20_000  # exact search stays within a few ms up to here on two cores
DEFAULT_MEMORY_BUDGET = 1 << 30
RECALL_TARGET = 0.95
_TUNING_QUERIES = 1000
TUNING_MARGIN = 0.02  # the held-out estimate is itself noisy: aim above the target
IVF_MIN_VECTORS = 1000  # fewer than this cannot train an IVF layout: such an index stays flat
SMALL_SUBSET = 20_000  # filtered sets up to this size: every list is scanned (exact candidates)
STREAM_CHUNK = 16_384  # vectors read and added per step (32 MB of float32 at 512-d, ~4x that while converted)
TRAIN_SAMPLE_MAX = 262_144  # 64 points per list up to 4,096 lists, fewer past (faiss asks >= 39)


class LayeredIndex:
    """An IVF index (`base`) with more searched beside it, which makes its own search parameters
    and lists its own ids: what search_parameters, index_ids and set_search_depth hand such an
    index to (delta.DeltaIndex, an on-disk index and its changes since)."""

    base: object

    def parameters(self, choice: IndexChoice | None, *, allowed: np.ndarray | None = None,
                   max_nprobe: int | None = None):
        raise NotImplementedError

    def ids(self) -> np.ndarray:
        raise NotImplementedError


@dataclass
class IndexChoice:
    index_type: str
    nlist: int = 0
    params: dict = field(default_factory=dict)  # search parameters, e.g. {"nprobe": 16}
    recall: float | None = None  # measured recall@10 against exact, on held-out queries
    build_seconds: float = 0.0
    on_disk: bool = False  # the lists are mapped from a data file beside the index (see ondisk.py)


def choose_index_type(n: int, dim: int, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> str:
    """Like autofaiss: the most exact index that fits the collection and the memory budget."""
    if n <= FLAT_MAX and n * dim * 4 <= memory_budget:
        return "flat"
    if n * dim * 4 * 1.1 <= memory_budget:
        return "ivf-flat"
    if n * dim * 1.1 <= memory_budget:
        return "ivf-sq8"
    return "ivf-pq"


def bytes_per_vector(index_type: str, dim: int) -> int:
    """Code plus id per vector of each IVF type: the lists are nearly all of an IVF's size."""
    code = {"ivf-flat": dim * 4, "ivf-sq8": dim, "ivf-pq": _pq_subquantizers(dim)}.get(index_type, dim * 4)
    return code + 8


def lists_on_disk(index_type: str, n: int, dim: int, memory_budget: int) -> bool:
    """Whether an IVF of this type over n vectors would not fit the budget in memory: its lists
    then live in a mapped data file (ondisk.py), whose pages are the kernel's cache."""
    return index_type != "flat" and n > 0 and n * bytes_per_vector(index_type, dim) * 1.1 > memory_budget


def choose_layout(n: int, dim: int, memory_budget: int = DEFAULT_MEMORY_BUDGET,
                  preferred: str = "auto") -> tuple[str, bool]:
    """(index type, lists on disk) for n vectors: the preferred type, or the auto choice; its
    lists go to disk when it does not fit the budget. Auto past what even PQ fits in memory
    takes IVF-SQ8 on disk: the budget no longer binds the lists, and SQ8 reaches the recall
    target where PQ's coarser codes do not (0.43 against 0.98 at 1M, tests/bench/ray_bench.py)."""
    index_type = choose_index_type(n, dim, memory_budget) if preferred == "auto" else preferred
    on_disk = lists_on_disk(index_type, n, dim, memory_budget)
    if preferred == "auto" and on_disk:
        index_type = "ivf-sq8"
    return index_type, on_disk


def _pq_subquantizers(dim: int) -> int:
    return next(m for m in (64, 32, 16, 8) if dim % m == 0)


def _nlist_for(n: int) -> int:
    """About 2*sqrt(n) lists, a power of two, with at least ~40 training points each."""
    if n < IVF_MIN_VECTORS:
        return 0
    target = 2 * math.sqrt(n)
    nlist = 2 ** round(math.log2(target))
    return int(max(16, min(nlist, n // 40)))


def new_index(index_type: str, dim: int, nlist: int = 0):
    """An empty index of the given type whose ids are ours (DuckDB ids)."""
    import faiss

    if index_type == "flat" or nlist == 0:
        return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    quantizer = faiss.IndexFlatIP(dim)
    if index_type == "ivf-flat":
        return faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    if index_type == "ivf-sq8":
        return faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                                             faiss.METRIC_INNER_PRODUCT)
    if index_type == "ivf-pq":
        return faiss.IndexIVFPQ(quantizer, dim, nlist, _pq_subquantizers(dim), 8, faiss.METRIC_INNER_PRODUCT)
    raise ValueError(f"unknown index type {index_type!r}; choose one of {', '.join(INDEX_TYPES)}")


def build_ann(ids: np.ndarray, vectors: np.ndarray, index_type: str, *, seed: int = 0):
    """Train (on a sample), add everything, tune the search depth; returns (index, IndexChoice)."""

    def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(ids), STREAM_CHUNK):
            yield ids[start:start + STREAM_CHUNK], vectors[start:start + STREAM_CHUNK]

    return build_ann_streamed(ids, chunks, vectors.shape[1] if vectors.ndim == 2 else 0, index_type, seed=seed)


def build_ann_streamed(ids: np.ndarray, chunks: Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]], dim: int,
                       index_type: str, *, seed: int = 0, data_path: Path | None = None):
    """build_ann without the collection in memory. `ids`: every id; `chunks()`: (ids, vectors)
    of all of them, a chunk at a time. For an IVF, a first pass picks the training sample and
    the tuning queries, and the second adds the vectors while finding those queries' exact
    neighbours: the peak is the index itself, one chunk, and the sample (<= TRAIN_SAMPLE_MAX).
    With `data_path`, an IVF's lists are written there and mapped (ondisk.write_lists), so the
    index itself is not held either."""
    started = time.perf_counter()
    n = len(ids)
    nlist = _nlist_for(n) if index_type != "flat" else 0
    index = new_index(index_type, dim, nlist)
    choice = IndexChoice(index_type if nlist else "flat", nlist)
    if n == 0:
        return index, choice
    k, truth = 10, None
    if nlist:
        training = ids[np.random.default_rng(seed).choice(n, size=min(n, nlist * 64, TRAIN_SAMPLE_MAX), replace=False)]
        tuning = ids[np.random.default_rng(seed + 1).choice(n, size=min(_TUNING_QUERIES, n), replace=False)]
        sample, queries = _gather(chunks, (training, tuning), dim)
        _train(index, sample)
        del sample
        truth = _TopK(len(queries), k + 1)
    if nlist and data_path is not None:
        write_lists(index, chunks, data_path, each_chunk=lambda ids_, vectors: truth.add(ids_, vectors, queries))
        choice.on_disk = True
    else:
        for chunk_ids, vectors in chunks():
            index.add_with_ids(vectors, chunk_ids)
            if truth is not None:
                truth.add(chunk_ids, vectors, queries)
    if nlist:
        choice.params, choice.recall = _tune(index, queries, truth.ids, k=k)
    choice.build_seconds = round(time.perf_counter() - started, 2)
    return index, choice


def _gather(chunks, wanted: tuple[np.ndarray, ...], dim: int) -> list[np.ndarray]:
    """The vectors of each id set in `wanted` (in id order), from one pass over the chunks; an id
    the chunks no longer hold is left out."""
    wanted = [np.sort(w) for w in wanted]
    out = [np.zeros((len(w), dim), np.float32) for w in wanted]
    seen = [np.zeros(len(w), bool) for w in wanted]
    for chunk_ids, vectors in chunks():
        for ids, rows, found in zip(wanted, out, seen, strict=True):
            hit = np.isin(chunk_ids, ids)
            if hit.any():
                at = np.searchsorted(ids, chunk_ids[hit])
                rows[at], found[at] = vectors[hit], True
    return [rows[found] for rows, found in zip(out, seen, strict=True)]


class _TopK:
    """The exact top-k ids by inner product of fixed queries, fed the collection chunk by chunk."""

    def __init__(self, queries: int, k: int):
        self.k = k
        self.scores = np.full((queries, k), -np.inf, np.float32)
        self.ids = np.full((queries, k), -1, np.int64)

    def add(self, chunk_ids: np.ndarray, vectors: np.ndarray, queries: np.ndarray) -> None:
        import faiss

        flat = faiss.IndexFlatIP(vectors.shape[1])
        flat.add(vectors)
        scores, positions = flat.search(queries, min(self.k, len(vectors)))
        found = np.where(positions >= 0, chunk_ids[np.maximum(positions, 0)], -1)
        scores = np.concatenate([self.scores, scores], axis=1)
        found = np.concatenate([self.ids, found], axis=1)
        best = np.argsort(-scores, axis=1, kind="stable")[:, :self.k]  # earlier chunks win ties
        self.scores = np.take_along_axis(scores, best, axis=1)
        self.ids = np.take_along_axis(found, best, axis=1)


def _train(index, sample: np.ndarray, clustering_index=None) -> None:
    """Train the IVF layout. Its main cost, k-means assignment, runs on the GPU when faiss sees
    one: faiss's own hook for that is the IVF's clustering_index."""
    import faiss

    ivf = faiss.extract_index_ivf(index)
    ivf.clustering_index = clustering_index or _gpu_flat_index(ivf.d)
    try:
        index.train(sample)
    finally:
        ivf.clustering_index = None  # never keep a GPU resource in the saved index


def _gpu_flat_index(dim: int):
    import faiss

    if faiss.get_num_gpus() == 0:
        return None
    return faiss.index_cpu_to_all_gpus(faiss.IndexFlatIP(dim))


def tune_search_depth(index, ids: np.ndarray, vectors: np.ndarray, *, seed: int = 0,
                      target: float = RECALL_TARGET, k: int = 10) -> tuple[dict, float]:
    """The smallest nprobe whose recall@k on held-out queries reaches `target` (with margin)."""
    rng = np.random.default_rng(seed + 1)
    queries = vectors[rng.choice(len(vectors), size=min(_TUNING_QUERIES, len(vectors)), replace=False)]
    return _tune(index, queries, exact_neighbours(ids, vectors, queries, k + 1), target=target, k=k)


def _tune(index, queries: np.ndarray, truth: np.ndarray, *, target: float = RECALL_TARGET,
          k: int = 10) -> tuple[dict, float]:
    """Double nprobe until recall@k against `truth` (exact top-(k+1), the query first) is reached."""
    import faiss

    nlist = faiss.extract_index_ivf(index).nlist
    nprobe, recall = 1, 0.0
    while True:
        set_search_depth(index, {"nprobe": nprobe})
        _, found = index.search(queries, k + 1)
        recall = measure_recall(found, truth, k)
        if recall >= target + TUNING_MARGIN or nprobe >= nlist:
            break
        nprobe = min(nprobe * 2, nlist)
    return {"nprobe": nprobe}, round(float(recall), 4)


def exact_neighbours(ids: np.ndarray, vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Ids of the exact top-k by inner product (the oracle for every index)."""
    import faiss

    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    _, positions = flat.search(queries, k)
    return np.where(positions >= 0, ids[np.maximum(positions, 0)], -1)


def measure_recall(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """recall@k where each query is a stored vector: its own id is dropped from both lists."""
    hits = 0
    for row_found, row_truth in zip(found, truth, strict=False):
        own = row_truth[0]
        expected = [t for t in row_truth if t != own][:k]
        got = [f for f in row_found if f != own and f >= 0][:k]
        hits += len(set(expected).intersection(got))
    return hits / (k * len(found)) if len(found) else 1.0


def set_search_depth(index, params: dict) -> None:
    import faiss

    if "nprobe" in params and not isinstance(index, faiss.IndexIDMap2):
        faiss.extract_index_ivf(index.base if isinstance(index, LayeredIndex) else index).nprobe = int(params["nprobe"])


def search_parameters(index, choice: IndexChoice, *, allowed: np.ndarray | None = None,
                      max_nprobe: int | None = None):
    """FAISS search parameters for one search: the tuned depth (at most `max_nprobe`), and a
    filter pushed in as an id selector. None when the index's own settings will do. For an
    on-disk index with its delta, parameters for both parts (delta.MergedParameters)."""
    import faiss

    if isinstance(index, LayeredIndex):
        return index.parameters(choice, allowed=allowed, max_nprobe=max_nprobe)
    if allowed is None and (choice.index_type == "flat" or max_nprobe is None):
        return None
    selector = faiss.IDSelectorBatch(allowed) if allowed is not None else None
    if choice.index_type == "flat":
        params = faiss.SearchParameters(sel=selector)
    else:
        nlist = faiss.extract_index_ivf(index).nlist
        nprobe = int(choice.params.get("nprobe", 1))
        if max_nprobe is not None:
            nprobe = min(nprobe, max_nprobe)
        if allowed is not None:
            # A filter thins every list: probe more of them so that enough allowed vectors are
            # reached; a small allowed set is cheap to scan entirely, which makes it exact.
            selectivity = len(allowed) / max(index.ntotal, 1)
            nprobe = nlist if len(allowed) <= SMALL_SUBSET else math.ceil(nprobe / max(selectivity, 1e-6))
        params = faiss.SearchParametersIVF(nprobe=min(nlist, nprobe))
        if selector is not None:
            params.sel = selector
    params._selector = selector  # keep it alive as long as the parameters
    return params


def index_ids(index) -> np.ndarray:
    """Every id held by an index, in insertion order (IDMap) or list order (IVF); sorted for an
    on-disk index with its delta."""
    import faiss

    if isinstance(index, LayeredIndex):
        return index.ids()
    if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    ivf = faiss.extract_index_ivf(index)
    invlists = ivf.invlists
    parts = []
    for list_no in range(ivf.nlist):
        size = invlists.list_size(list_no)
        if size:
            pointer = invlists.get_ids(list_no)
            parts.append(faiss.rev_swig_ptr(pointer, size).astype(np.int64).copy())
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)

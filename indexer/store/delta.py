"""The changes beside an on-disk IVF: vectors added or changed since its lists were written,
searched exactly, and the ids of its entries that no longer count (removed, or changed and now
held by the delta). Searches merge the two, so a change costs the change, not a new data file;
past a bound the delta is folded into a new data file (ondisk.rewrite_lists) at a writer's save.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ann import IndexChoice, LayeredIndex, index_ids, search_parameters

__all__ = ["DeltaIndex", "MergedParameters", "FOLD_FRACTION", "FOLD_MAX", "fold_due", "past_fold_bound",
           "delta_section", "section_of", "parse_section", "read_delta"]

# A delta is folded once it holds more than 2% of the collection or 50,000 entries, whichever is
# fewer. Below that it is cheap to keep: each query scans it exactly (20k vectors, 2% of 1M, in
# ~2 ms at 512-d on this machine's core, against ~4 ms for a query of the 1M lists), and each save
# of the index file carries it (2 KB a vector: 20k are 40 MB, 50k are 100 MB), where a fold
# writes the whole data file (500 MB at 1M) once.
FOLD_FRACTION = 0.02
FOLD_MAX = 50_000


@dataclass(frozen=True)
class _State:
    """One consistent delta: replaced whole by a change, so a search in another thread reads
    either the old or the new one, never half of each."""
    ids: np.ndarray  # sorted
    vectors: np.ndarray  # rows of `ids`
    masked: np.ndarray  # sorted ids of the base's entries that no longer count
    selector: tuple | None  # faiss selector of the base's entries that count (None: all do), kept alive here


@dataclass
class MergedParameters:
    """What search_parameters gives for a DeltaIndex: the base's FAISS parameters (the mask, the
    filter, the depth), the filter for the delta (sorted), the state both were made for, and what
    they were made from (for another index, such as the one a refresh put in its place)."""
    base: object | None  # None: the filter allows none of the base's entries, which is not searched
    allowed: np.ndarray | None
    state: _State
    owner: DeltaIndex
    choice: IndexChoice | None
    max_nprobe: int | None


class DeltaIndex(LayeredIndex):
    """An on-disk IVF index (`base`, whose data file is never written) and the changes since its
    lists were written. Searched as a FAISS index is (search, ntotal, d, nprobe): the callers of
    search_parameters then search both parts, each exactly as far as its own kind allows."""

    def __init__(self, base, ids=None, vectors=None, masked=None, base_ids: np.ndarray | None = None):
        self.base = base
        self.d = int(base.d)
        ids = np.zeros(0, np.int64) if ids is None else np.asarray(ids, np.int64)
        vectors = np.zeros((0, self.d), np.float32) if vectors is None else np.asarray(vectors, np.float32)
        masked = np.zeros(0, np.int64) if masked is None else np.asarray(masked, np.int64)
        order = np.argsort(ids, kind="stable")
        self._state = _state(ids[order], vectors.reshape(len(ids), self.d)[order], np.unique(masked))
        self._base_ids = base_ids
        self._ids: tuple[_State, np.ndarray] | None = None

    @property
    def ntotal(self) -> int:
        state = self._state
        return int(self.base.ntotal) - len(state.masked) + len(state.ids)

    @property
    def nprobe(self) -> int:
        return int(self._ivf().nprobe)

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self._ivf().nprobe = int(value)

    @property
    def pending(self) -> int:
        """Entries a fold would change: ids added, changed or removed since the lists were written."""
        state = self._state
        return len(np.union1d(state.ids, state.masked))

    @property
    def delta_ids(self) -> np.ndarray:
        return self._state.ids

    @property
    def delta_vectors(self) -> np.ndarray:
        return self._state.vectors

    @property
    def masked(self) -> np.ndarray:
        return self._state.masked

    def base_ids(self) -> np.ndarray:
        """The sorted ids in the base's lists, read from the mapping once (8 bytes each)."""
        if self._base_ids is None:
            self._base_ids = np.sort(index_ids(self.base))
        return self._base_ids

    def ids(self) -> np.ndarray:
        """Every id that counts, sorted: made once per state (a refresh checks them against
        DuckDB's), in linear time (the masked ids are the base's, the delta's are none of them)."""
        state, cached = self._state, self._ids
        if cached is not None and cached[0] is state:
            return cached[1]
        base = self.base_ids()
        at = np.minimum(np.searchsorted(base, state.masked), max(len(base) - 1, 0))
        kept = np.delete(base, at[base[at] == state.masked]) if len(state.masked) and len(base) else base
        ids = np.insert(kept, np.searchsorted(kept, state.ids), state.ids) if len(state.ids) else kept
        self._ids = (state, ids)
        return ids

    def apply(self, changed: np.ndarray, ids: np.ndarray, vectors: np.ndarray) -> None:
        """The ids in `changed` now hold `vectors` (rows of `ids`), or nothing when not in `ids`."""
        state = self._state
        changed = np.unique(np.asarray(changed, np.int64))
        keep = np.flatnonzero(~_contains(changed, state.ids))
        masked = np.union1d(state.masked, changed[_contains(self.base_ids(), changed)])
        ids = np.asarray(ids, np.int64)
        merged_ids = np.concatenate([state.ids[keep], ids])
        order = np.argsort(merged_ids, kind="stable")
        place = np.empty(len(order), np.int64)
        place[order] = np.arange(len(order))  # where each kept, then each new, row goes
        merged = np.empty((len(order), self.d), np.float32)  # filled in place: no concatenated copy to reorder
        merged[place[:len(keep)]] = state.vectors[keep]
        merged[place[len(keep):]] = np.asarray(vectors, np.float32).reshape(len(ids), self.d)
        self._state = _state(merged_ids[order], merged, masked)

    def parameters(self, choice: IndexChoice | None, *, allowed: np.ndarray | None = None,
                   max_nprobe: int | None = None) -> MergedParameters:
        """search_parameters for both parts: the base searched with its masked entries left out
        (and the filter pushed in), the delta filtered the same way."""
        import faiss

        state = self._state
        base_allowed = None
        if allowed is not None:
            allowed = np.unique(np.asarray(allowed, np.int64))
            base_allowed = allowed[~_contains(state.masked, allowed)] if len(state.masked) else allowed
        params = None
        if choice is not None:
            params = search_parameters(self.base, choice, allowed=base_allowed, max_nprobe=max_nprobe)
        if params is None:  # the index's own depth (the tuned one, set when loaded)
            params = faiss.SearchParametersIVF(nprobe=self.nprobe)
        if base_allowed is None and state.selector is not None:
            params.sel = state.selector[0]
        if base_allowed is not None and not len(base_allowed):
            params = None
        return MergedParameters(params, allowed, state, self, choice, max_nprobe)

    def search(self, x: np.ndarray, k: int, params: MergedParameters | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids) of the k best of both parts, best first; -1 pads a row short of k. The
        base's scores are its codes' (approximate), the delta's exact: callers re-score."""
        import faiss

        x = np.ascontiguousarray(x, np.float32)
        if params is None:
            params = self.parameters(None)
        elif params.owner is not self:
            params = self.parameters(params.choice, allowed=params.allowed, max_nprobe=params.max_nprobe)
        state = params.state
        k = int(k)
        if params.base is not None:
            base_scores, base_ids = self.base.search(x, k, params=params.base)
        else:
            base_scores, base_ids = np.full((len(x), k), -np.inf, np.float32), np.full((len(x), k), -1, np.int64)
        ids, vectors = state.ids, state.vectors
        if params.allowed is not None and len(ids):
            inside = _contains(params.allowed, ids)
            ids, vectors = ids[inside], vectors[inside]
        if not len(ids):
            return base_scores, base_ids
        scores, positions = faiss.knn(x, vectors, min(k, len(ids)), metric=faiss.METRIC_INNER_PRODUCT)
        found = np.where(positions >= 0, ids[np.maximum(positions, 0)], -1)
        scores = np.concatenate([base_scores, scores], axis=1)
        found = np.concatenate([base_ids, found], axis=1)
        scores[found < 0] = -np.inf
        best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, best, axis=1), np.take_along_axis(found, best, axis=1)

    def _ivf(self):
        import faiss

        return faiss.extract_index_ivf(self.base)


def fold_due(index: DeltaIndex) -> bool:
    """Whether the delta is past its bound (see FOLD_FRACTION, FOLD_MAX)."""
    return past_fold_bound(index.pending, index.ntotal)


def past_fold_bound(pending: int, total: int) -> bool:
    return pending > 0 and pending > min(FOLD_FRACTION * total, FOLD_MAX)


def delta_section(index: DeltaIndex) -> tuple[dict, list[bytes]]:
    """What an index file carries of the delta: counts for its header, and the bytes (ids,
    vectors, masked ids) that follow the FAISS payload."""
    state = index._state
    return section_of(state.ids, state.vectors, state.masked)


def section_of(ids: np.ndarray, vectors: np.ndarray, masked: np.ndarray) -> tuple[dict, list[bytes]]:
    """A delta section: counts for the header, and the bytes of ids, vectors (rows of ids) and masked ids."""
    ids, masked = np.asarray(ids, np.int64), np.asarray(masked, np.int64)
    header = {"vectors": len(ids), "masked": len(masked)}
    return header, [ids.tobytes(), np.ascontiguousarray(vectors, np.float32).tobytes(), masked.tobytes()]


def read_delta(base, header: dict, section, base_ids: np.ndarray | None = None) -> DeltaIndex:
    """The DeltaIndex an index file holds: `section` is the bytes after its FAISS payload;
    ValueError when they do not hold what the header says."""
    ids, vectors, masked = parse_section(int(base.d), header, section)
    return DeltaIndex(base, ids, vectors, masked, base_ids=base_ids)


def parse_section(d: int, header: dict, section) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, vectors, masked ids) of a delta section; ValueError when it does not hold what the
    header says."""
    try:
        n, m = int(header["vectors"]), int(header["masked"])
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"damaged header: delta {e}") from e
    sizes = (n * 8, n * d * 4, m * 8)
    if n < 0 or m < 0 or len(section) != sum(sizes):
        raise ValueError("delta section does not match its header")
    raw = np.asarray(section, np.uint8)
    ids = raw[:sizes[0]].copy().view(np.int64)
    vectors = raw[sizes[0]:sizes[0] + sizes[1]].copy().view(np.float32).reshape(n, d)
    masked = raw[sizes[0] + sizes[1]:].copy().view(np.int64)
    return ids, vectors, masked


def _state(ids: np.ndarray, vectors: np.ndarray, masked: np.ndarray) -> _State:
    """A state, with the selector that leaves the masked entries out of the base's search."""
    import faiss

    selector = None
    if len(masked):
        inner = faiss.IDSelectorBatch(masked)
        selector = (faiss.IDSelectorNot(inner), inner)  # the outer one points at the inner
    return _State(ids, np.ascontiguousarray(vectors, np.float32), masked, selector)


def _contains(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Which of `ids` are in `sorted_ids` (sorted, unique)."""
    if not len(sorted_ids):
        return np.zeros(len(ids), bool)
    at = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return sorted_ids[at] == ids

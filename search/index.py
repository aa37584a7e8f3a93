"""ImageIndex: open a store read-only and find the images most like a query."""

from __future__ import annotations

import io
import math
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from indexer.errors import ConfigError, ImageLoadError, StoreMismatchError
from indexer.images import load_image, read_image_bytes, to_rgb
from indexer.weights import weights_from_manifest
from indexer.scan import is_within
from indexer.store import Store, default_store_dir, encode_path
from indexer.vectors import open_vector_index, refresh_vector_index

from .filters import matching_ids

__all__ = ["ImageIndex", "Hit", "to_records", "to_dataframe"]

SMALL_SUBSET = 20_000  # filtered sets up to this size: every list is scanned (exact candidates)
ENCODE_BATCH = 16


@dataclass(frozen=True)
class Hit:
    id: int
    path: str
    score: float  # cosine similarity, computed from the stored embedding
    width: int | None
    height: int | None
    format: str | None
    size: int | None
    mtime: datetime | None
    captured_at: datetime | None
    camera: str | None
    stale: bool = False  # the file was deleted or changed after indexing

    def to_record(self) -> dict:
        return asdict(self)


def to_records(hits: Iterable[Hit]) -> list[dict]:
    return [hit.to_record() for hit in hits]


def to_dataframe(hits: Iterable[Hit]):
    """Hits as a pandas DataFrame (pandas comes with gradio)."""
    import pandas as pd

    return pd.DataFrame(to_records(hits), columns=list(Hit.__dataclass_fields__))


class ImageIndex:
    """A read-only view of a store: its vectors in memory, its model loaded on demand.

    `ImageIndex.open(store)` takes the model, weights and preprocessing from the store.
    Thread-safe for searches; `refresh()` picks up what an indexer committed since.
    """

    def __init__(self, store: Store, manifest: dict, vectors, *, device: str = "auto", encoder=None):
        self.store, self.manifest, self.vectors = store, manifest, vectors
        self._device = device
        self._encoder = encoder
        # One model call at a time: torch already uses every core, and concurrent calls from
        # a server's handlers would only oversubscribe them.
        self._model_lock = threading.RLock()

    @classmethod
    def open(cls, store: str | os.PathLike | None = None, *, device: str = "auto", encoder=None) -> "ImageIndex":
        db = Store(store or default_store_dir())
        db.require()
        manifest = db.manifest()
        return cls(db, manifest, open_vector_index(db, manifest), device=device, encoder=encoder)

    def __len__(self) -> int:
        return self.vectors.count

    def refresh(self) -> bool:
        """Catch up with the store's latest commit; True when something changed."""
        manifest = self.store.manifest()
        if manifest.get("generation") == self.manifest.get("generation"):
            return False
        self.vectors = refresh_vector_index(self.store, self.vectors, manifest)
        self.manifest = manifest
        return True

    @property
    def encoder(self):
        """The store's own model and preprocessing, loaded on first use."""
        with self._model_lock:
            return self._load_encoder()

    def _load_encoder(self):
        if self._encoder is None:
            from indexer.encoder import load_encoder

            encoder = load_encoder(weights_from_manifest(self.manifest), device=self._device)
            if encoder.weights.fingerprint != self.manifest["weights_fingerprint"]:
                raise StoreMismatchError(
                    f"the weights at {self.manifest['weights_source']} are not the ones the store was built with"
                )
            self._encoder = encoder
        return self._encoder

    # ---- queries ----

    def search(self, query, k: int = 10, where: str | None = None,
               min_score: float | None = None) -> list[Hit]:
        """The k images most like `query`: a file path, an indexed path or id, a PIL image,
        bytes, an HxWx3 uint8 array, or a vector."""
        return self.search_many([query], k=k, where=where, min_score=min_score)[0]

    def search_many(self, queries: Sequence, k: int = 10, where: str | None = None,
                    min_score: float | None = None) -> list[list[Hit]]:
        """Like search() for each query; images go through the model in batches."""
        vectors = self.embed_many(queries)
        allowed = None
        if where is not None:
            with self.store.connect() as con:
                allowed = matching_ids(con, where)
        candidates = self._candidates(vectors, int(k), allowed)
        return [self._hits(ids, vector, int(k), min_score) for ids, vector in zip(candidates, vectors)]

    def embed(self, query) -> np.ndarray:
        return self.embed_many([query])[0]

    def embed_many(self, queries: Sequence) -> np.ndarray:
        """Unit vectors for queries; stored embeddings are reused for indexed, unchanged files."""
        dim = int(self.manifest["dim"])
        result = np.zeros((len(queries), dim), np.float32)
        to_encode: list[tuple[int, object]] = []
        for position, query in enumerate(queries):
            vector = self._known_vector(query)
            if vector is not None:
                result[position] = vector
            else:
                to_encode.append((position, self._to_image(query)))
        for start in range(0, len(to_encode), ENCODE_BATCH):
            chunk = to_encode[start:start + ENCODE_BATCH]
            import torch

            batch = torch.stack([torch.as_tensor(self.encoder.preprocess(image)) for _, image in chunk])
            with self._model_lock:
                vectors = self.encoder.encode(batch)
            for (position, _), vector in zip(chunk, vectors):
                result[position] = vector
        return result

    def _known_vector(self, query) -> np.ndarray | None:
        if isinstance(query, np.ndarray) and query.ndim == 1:
            if query.shape[0] != self.manifest["dim"]:
                raise ConfigError(f"query vector has {query.shape[0]} dims, the store has {self.manifest['dim']}")
            vector = query.astype(np.float32)
            return vector / max(float(np.linalg.norm(vector)), 1e-12)
        if isinstance(query, (int, np.integer)) and not isinstance(query, bool):
            sql, param = "id = ?", int(query)
        elif isinstance(query, (str, Path)):
            if not os.path.exists(query):
                raise ConfigError(f"no such file: {query}")
            sql, param = "path = ?", encode_path(os.path.abspath(query))[0]
        else:
            return None
        with self.store.connect() as con:
            row = con.execute(
                f"SELECT embedding, size, mtime_ns, path FROM images WHERE status = 'ok' AND {sql}", [param]
            ).fetchone()
        if row is None:
            if isinstance(query, (int, np.integer)):
                raise ConfigError(f"no indexed image has id {query}")
            return None
        embedding, size, mtime_ns, path = row
        if isinstance(query, (str, Path)) and not _unchanged(path, size, mtime_ns):
            return None  # the file was edited since indexing: embed what is on disk now
        return np.asarray(embedding, dtype=np.float32)

    def _to_image(self, query):
        from PIL import Image

        if isinstance(query, Image.Image):
            return to_rgb(query)
        if isinstance(query, np.ndarray):
            if query.ndim != 3 or query.shape[2] != 3:
                raise ConfigError(f"an array query must be HxWx3, got shape {query.shape}")
            return Image.fromarray(np.ascontiguousarray(query.astype(np.uint8)), "RGB")
        if isinstance(query, (bytes, bytearray, memoryview)):
            data = bytes(query)
        elif isinstance(query, (str, Path)):
            data = read_image_bytes(str(query))
        elif isinstance(query, io.IOBase):
            data = query.read()
        else:
            raise ConfigError(f"cannot search with a {type(query).__name__}")
        try:
            return load_image(data, draft_size=self.encoder.draft_size).image
        except ImageLoadError as e:
            raise ConfigError(f"query image unusable: {e}") from e

    # ---- vector search ----

    def _candidates(self, vectors: np.ndarray, k: int, allowed: np.ndarray | None) -> list[np.ndarray]:
        """Candidate ids per query. Flat indexes are exact; IVF ones fetch extra candidates for
        exact re-ranking, and a filter is pushed into FAISS as an id selector."""
        if (allowed is not None and len(allowed) == 0) or k <= 0 or len(self) == 0:
            return [np.zeros(0, np.int64) for _ in vectors]
        exact_index = self.vectors.index_type == "flat"
        # Extra candidates: ties (identical copies) at the k-th place then resolve by id, and
        # approximate scores get room for exact re-ranking.
        fetch = k + 8 if exact_index else max(4 * k, 50)
        params = None if allowed is None else self._filter_params(allowed)
        _, ids = self.vectors.index.search(vectors, min(fetch, len(self)), params=params)
        return [row[row >= 0] for row in ids]

    def _filter_params(self, allowed: np.ndarray):
        import faiss

        selector = faiss.IDSelectorBatch(allowed)
        if self.vectors.index_type == "flat":
            params = faiss.SearchParameters(sel=selector)
        else:
            nprobe = int(self.vectors.choice.params.get("nprobe", 1))
            nlist = faiss.extract_index_ivf(self.vectors.index).nlist
            selectivity = len(allowed) / max(len(self), 1)
            # A filter thins every list: probe more of them so that enough allowed vectors are
            # reached; a small allowed set is cheap to scan entirely, which makes it exact.
            scaled = nlist if len(allowed) <= SMALL_SUBSET else math.ceil(nprobe / max(selectivity, 1e-6))
            params = faiss.SearchParametersIVF(sel=selector, nprobe=min(nlist, scaled))
        params._selector = selector  # keep it alive as long as the parameters
        return params

    def _hits(self, ids: np.ndarray, vector: np.ndarray, k: int, min_score: float | None) -> list[Hit]:
        """Rows for candidate ids, scored exactly against their stored embeddings, best first."""
        if not len(ids):
            return []
        id_list = ", ".join(str(int(i)) for i in ids)  # integers only: safe to inline, and a
        with self.store.connect() as con:               # literal list lets DuckDB use its key index
            rows = con.execute(
                "SELECT id, path, width, height, format, size, make_timestamp(mtime_ns // 1000), "
                "captured_at, camera, mtime_ns, path_bytes, root, embedding FROM images "
                f"WHERE status = 'ok' AND id IN ({id_list})"
            ).fetchall()
        scored = []
        for r in rows:
            if not is_within(r[1], r[11]):
                continue  # never a path outside the indexed roots
            score = float(np.dot(np.asarray(r[12], np.float32), vector))
            if min_score is not None and score < min_score:
                continue
            disk_path = os.fsdecode(r[10]) if r[10] else r[1]
            stale = not _unchanged(disk_path, r[5], r[9])
            scored.append(Hit(r[0], r[1], score, r[2], r[3], r[4], r[5], r[6], r[7], r[8], stale))
        scored.sort(key=lambda h: (-h.score, h.id))
        return scored[:k]


def _unchanged(path: str, size: int, mtime_ns: int) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_size == size and st.st_mtime_ns == mtime_ns

"""ImageIndex: open a store read-only and find the images most like a query."""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from indexer.errors import ConfigError, ImageLoadError, StoreMismatchError
from indexer.images import load_image, read_image_bytes
from indexer.pipeline import weights_from_manifest
from indexer.store import Store, default_store_dir, encode_path
from indexer.vectors import open_vector_index

__all__ = ["ImageIndex", "Hit"]


@dataclass(frozen=True)
class Hit:
    id: int
    path: str
    score: float  # cosine similarity
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


class ImageIndex:
    """A read-only view of a store: its vectors in memory and its model loaded on demand."""

    def __init__(self, store: Store, manifest: dict, vectors, *, device: str = "auto", encoder=None):
        self.store, self.manifest, self.vectors = store, manifest, vectors
        self._device = device
        self._encoder = encoder

    @classmethod
    def open(cls, store: str | os.PathLike | None = None, *, device: str = "auto", encoder=None) -> "ImageIndex":
        db = Store(store or default_store_dir())
        db.require()
        manifest = db.manifest()
        return cls(db, manifest, open_vector_index(db, manifest), device=device, encoder=encoder)

    def __len__(self) -> int:
        return self.vectors.count

    @property
    def encoder(self):
        """The store's own model and preprocessing, loaded on first use."""
        if self._encoder is None:
            from indexer.encoder import load_encoder

            encoder = load_encoder(weights_from_manifest(self.manifest), device=self._device)
            if encoder.weights.fingerprint != self.manifest["weights_fingerprint"]:
                raise StoreMismatchError(
                    f"the weights at {self.manifest['weights_source']} are not the ones the store was built with"
                )
            self._encoder = encoder
        return self._encoder

    def embed(self, query) -> np.ndarray:
        """A query (path, id, PIL image, bytes, HxWx3 array or vector) as a unit vector."""
        if isinstance(query, np.ndarray) and query.ndim == 1:
            vector = query.astype(np.float32)
            if vector.shape[0] != self.manifest["dim"]:
                raise ConfigError(f"query vector has {vector.shape[0]} dims, the store has {self.manifest['dim']}")
            return vector / max(float(np.linalg.norm(vector)), 1e-12)
        stored = self._stored_vector(query)
        if stored is not None:
            return stored
        image = self._to_image(query)
        batch = self.encoder.preprocess(image)
        import torch

        return self.encoder.encode(torch.as_tensor(batch).unsqueeze(0))[0]

    def search(self, query, k: int = 10) -> list[Hit]:
        vector = self.embed(query)
        k = min(int(k), len(self))
        if k <= 0:
            return []
        scores, ids = self.vectors.index.search(vector[None, :], k)
        return self._hits(ids[0], scores[0])

    def _stored_vector(self, query) -> np.ndarray | None:
        if isinstance(query, (int, np.integer)) and not isinstance(query, bool):
            sql, param = "id = ?", int(query)
        elif isinstance(query, (str, Path)):
            sql, param = "path = ?", encode_path(os.path.abspath(query))[0]
            if not os.path.exists(query):
                raise ConfigError(f"no such file: {query}")
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
        if not _unchanged(path, size, mtime_ns):
            return None  # edited since indexing: embed what is on disk now
        return np.asarray(embedding, dtype=np.float32)

    def _to_image(self, query):
        from PIL import Image

        if isinstance(query, Image.Image):
            from indexer.images import to_rgb

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

    def _hits(self, ids: np.ndarray, scores: np.ndarray) -> list[Hit]:
        wanted = [(int(i), float(s)) for i, s in zip(ids, scores) if i >= 0]
        if not wanted:
            return []
        with self.store.connect() as con:
            con.register("wanted", {"id": np.array([i for i, _ in wanted], dtype=np.int64)})
            rows = con.execute(
                "SELECT id, path, width, height, format, size, make_timestamp(mtime_ns // 1000), "
                "captured_at, camera, mtime_ns, path_bytes FROM images WHERE id IN (SELECT id FROM wanted)"
            ).fetchall()
        by_id = {r[0]: r for r in rows}
        hits = []
        for row_id, score in wanted:
            r = by_id.get(row_id)
            if r is None:
                continue  # removed since the vectors were loaded
            disk_path = os.fsdecode(r[10]) if r[10] else r[1]
            stale = not _unchanged(disk_path, r[5], r[9])
            hits.append(Hit(row_id, r[1], score, r[2], r[3], r[4], r[5], r[6], r[7], r[8], stale))
        return hits


def _unchanged(path: str, size: int, mtime_ns: int) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return st.st_size == size and st.st_mtime_ns == mtime_ns

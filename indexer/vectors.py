"""The FAISS index file: derived from DuckDB, saved atomically, checked and repaired on open.

File layout: magic, header length, a JSON header (generation, count, crc32, index type), then
the serialized FAISS index. The header's generation says which committed DuckDB state it holds;
DuckDB's vector_log lists the ids changed since, so a file that is behind is caught up.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .faults import fault_point
from .store import Store

__all__ = [
    "VectorIndex", "open_vector_index", "refresh_vector_index", "save_vector_index",
    "clean_leftovers", "FAISS_NAME",
]

FAISS_NAME = "vectors.faiss"
_MAGIC = b"VITSRCH1"
INDEX_TYPE = "flat-ip"


@dataclass
class VectorIndex:
    index: object  # faiss.IndexIDMap2 over an inner-product index
    generation: int
    index_type: str
    repair: str | None = None  # what open_vector_index had to do, for the report

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        import faiss

        return np.sort(faiss.vector_to_array(self.index.id_map).astype(np.int64))


def new_flat_index(dim: int):
    import faiss

    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def save_vector_index(store: Store, vectors: VectorIndex) -> None:
    """Write to a temporary file, flush it to disk, then rename over the old one."""
    import faiss

    payload = faiss.serialize_index(vectors.index)
    header = json.dumps({
        "generation": vectors.generation,
        "count": vectors.count,
        "crc32": zlib.crc32(payload),
        "index_type": vectors.index_type,
    }).encode()
    final = store.dir / FAISS_NAME
    temporary = store.dir / f"{FAISS_NAME}.tmp-{os.getpid()}"
    with open(temporary, "wb") as f:
        f.write(_MAGIC + struct.pack("<I", len(header)) + header)
        half = len(payload) // 2
        f.write(memoryview(payload)[:half])
        fault_point("faiss_save")  # a kill here must leave the old file intact
        f.write(memoryview(payload)[half:])
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, final)
    _fsync_dir(store.dir)


def load_vector_file(path: Path) -> tuple[object, dict]:
    """Read and verify one index file; ValueError says what is wrong with it."""
    import faiss

    data = path.read_bytes()
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 4:
        raise ValueError("not a vitsearch index file")
    (length,) = struct.unpack_from("<I", data, len(_MAGIC))
    start = len(_MAGIC) + 4
    try:
        header = json.loads(data[start:start + length])
    except ValueError as e:
        raise ValueError(f"damaged header: {e}") from e
    payload = np.frombuffer(data, dtype=np.uint8, offset=start + length)
    if zlib.crc32(payload) != header.get("crc32"):
        raise ValueError("checksum mismatch (truncated or corrupted)")
    index = faiss.deserialize_index(payload)
    if index.ntotal != header.get("count"):
        raise ValueError("vector count does not match its header")
    return index, header


def open_vector_index(store: Store, manifest: dict) -> VectorIndex:
    """The FAISS index matching DuckDB's committed state: loaded, caught up, or rebuilt."""
    path = store.dir / FAISS_NAME
    vectors, problem = None, None
    if path.exists():
        try:
            index, header = load_vector_file(path)
            vectors = VectorIndex(index, int(header["generation"]), header.get("index_type", INDEX_TYPE))
        except (OSError, ValueError, RuntimeError) as e:
            problem = f"index file unusable ({e})"
    elif int(manifest.get("generation", 0)):
        problem = "index file missing"
    return refresh_vector_index(store, vectors, manifest, problem)


def refresh_vector_index(store: Store, vectors: VectorIndex | None, manifest: dict,
                         problem: str | None = None) -> VectorIndex:
    """Bring `vectors` to the manifest's generation from the change log, or rebuild it."""
    generation = int(manifest.get("generation", 0))
    repair = f"rebuilt: {problem}" if problem else None
    if vectors is not None and vectors.generation != generation:
        if int(manifest.get("log_floor", 0)) <= vectors.generation < generation:
            repair = repair or f"caught up from generation {vectors.generation} to {generation}"
            _catch_up(store, vectors, generation)
            vectors.generation = generation
        else:
            repair = f"rebuilt: index is at generation {vectors.generation}, store at {generation}"
            vectors = None
    if vectors is not None and not np.array_equal(vectors.ids(), store.live_ids()):
        repair = "rebuilt: index ids did not match the store"
        vectors = None
    if vectors is None:
        vectors = rebuild(store, int(manifest["dim"]), generation)
    vectors.repair = repair
    return vectors


def rebuild(store: Store, dim: int, generation: int) -> VectorIndex:
    index = new_flat_index(dim)
    ids, embeddings = store.embeddings()
    if len(ids):
        index.add_with_ids(embeddings, ids)
    return VectorIndex(index, generation, INDEX_TYPE)


def _catch_up(store: Store, vectors: VectorIndex, generation: int) -> None:
    changed = store.changed_since(vectors.generation)
    if len(changed):
        vectors.index.remove_ids(changed)
        ids, embeddings = store.embeddings(changed)
        if len(ids):
            vectors.index.add_with_ids(embeddings, ids)


def clean_leftovers(store: Store) -> None:
    """Remove temporary files of saves that were killed midway."""
    for leftover in store.dir.glob(f"{FAISS_NAME}.tmp-*"):
        leftover.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

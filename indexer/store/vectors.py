"""The FAISS index file: derived from DuckDB, saved atomically, checked and repaired on open.

File layout: magic (the format's version), header length, a JSON header (generation, count,
crc32 of all that follows, index choice, data file, payload length, delta counts), the serialized
FAISS index, then the delta (ids, vectors, masked ids; see delta.py). The FAISS index itself is
not in that file but in a base file, so a save writes the changes since the base, not the
collection: an on-disk index's base (its quantizer: 4 MB at 1M) is written once with its data
file; an in-memory index's (all of it: 200 MB at 100k, 520 MB at 1M as IVF-SQ8) is written anew
only once the ids changed since pass the delta's bound (2% or 50,000), and is loaded with the
delta applied. The header's
generation says which committed DuckDB state it holds; DuckDB's vector_log lists the ids changed
since, so a file that is behind is caught up. An index too big for the memory budget keeps its
lists in a data file beside it (ondisk.py), written before the index file that names it, never
changed after, and removed once no saved index names it: changes since its build go to the delta,
folded into a new data file at a writer's save once past its bound (delta.fold_due).
"""

from __future__ import annotations

import json
import os
import struct
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..faults import fault_point
from .ann import (
    DEFAULT_MEMORY_BUDGET,
    FLAT_MAX,
    IVF_MIN_VECTORS,
    STREAM_CHUNK,
    IndexChoice,
    build_ann_streamed,
    choose_layout,
    index_ids,
    set_search_depth,
)
from .delta import DeltaIndex, delta_section, fold_due, parse_section, past_fold_bound, read_delta, section_of
from .ondisk import (
    BASE_SUFFIX,
    DATA_SUFFIX,
    base_path,
    data_file,
    file_crc32,
    new_base_path,
    new_data_path,
    private_data_dir,
    reopen_mapped,
    rewrite_lists,
)
from .store import Store

__all__ = [
    "VectorIndex", "open_for_writing", "sync_and_save", "open_vector_index", "refresh_vector_index",
    "save_vector_index", "rebuild", "needs_new_layout", "clean_leftovers", "DeferredSaves", "FAISS_NAME",
    "saved_index_current", "load_saved",
]

FAISS_NAME = "vectors.faiss"
_MAGIC = b"VITSRCH4"
# Still read: 3, an on-disk index's FAISS payload in the file; 2, before the delta (the FAISS
# payload is all that follows the header).
_OLDER_MAGICS = (b"VITSRCH3", b"VITSRCH2")
RETRAIN_GROWTH = 4  # an IVF trained on n vectors is rebuilt once the collection passes 4n


@dataclass
class VectorIndex:
    index: object  # ids are DuckDB ids; inner product on unit vectors = cosine; a DeltaIndex when on disk
    generation: int
    choice: IndexChoice
    trained_on: int = 0  # collection size when the layout was chosen
    repair: str | None = None  # what open_vector_index had to do, for the report
    rebuilt: bool = False  # rebuilt from DuckDB when opened or refreshed: its file, if any, is stale
    saved_data: str | None = None  # name of the lists' data file the saved index file names
    data_crc32: int | None = None  # the checksum of the data file named `crc_of`, known once computed
    crc_of: str | None = None
    base_crc32: int | None = None  # the checksum of the base file named `base_of`, once written or read
    base_of: str | None = None
    since_base: set[int] = field(default_factory=set)  # in memory: the ids changed since base_of was written

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    @property
    def index_type(self) -> str:
        return self.choice.index_type

    def ids(self) -> np.ndarray:
        ids = index_ids(self.index)
        return ids if isinstance(self.index, DeltaIndex) else np.sort(ids)  # a DeltaIndex's come sorted


def open_for_writing(store: Store, manifest: dict) -> VectorIndex:
    """A writer's first step: leftovers of killed saves removed, the index verified against
    DuckDB and, if it had to be repaired, saved at once."""
    clean_leftovers(store)
    vectors = open_vector_index(store, manifest)
    if vectors.repair:
        save_vector_index(store, vectors)
    return vectors


def sync_and_save(store: Store, vectors: VectorIndex | None, *, rebuild_as: str | None = None) -> VectorIndex:
    """A writer's last step: bring the index to DuckDB's committed state (caught up, or rebuilt
    when the collection outgrew its layout or `rebuild_as` asks), save it, forget the log."""
    manifest = store.manifest()
    if rebuild_as is None and vectors is not None:
        vectors = refresh_vector_index(store, vectors, manifest)
    if rebuild_as is not None or vectors is None or needs_new_layout(vectors, manifest):
        vectors = rebuild(store, manifest, rebuild_as)
    save_vector_index(store, vectors)
    store.truncate_log(vectors.generation)
    return vectors


class DeferredSaves:
    """For a process that syncs one store again and again (`index --watch`): the FAISS index stays
    in memory between syncs and its file is rewritten at most every `interval` seconds, not after
    every change (at 100k images that is ~200 MB written and flushed per change). Nothing is lost
    meanwhile: DuckDB's change log keeps every vector change since the saved file, so readers
    (`serve`) and a restart after a crash catch up from it, as they do after any run."""

    def __init__(self, interval: float = 60.0):
        self.interval = interval
        self.vectors: VectorIndex | None = None
        self.saved_generation = -1  # the generation the file holds
        self.saved_at = float("-inf")  # the first sync (the whole folder) is saved at once

    @property
    def pending(self) -> bool:
        return self.vectors is not None and self.vectors.generation != self.saved_generation

    def open(self, store: Store, manifest: dict) -> VectorIndex:
        """The writer's first step (see open_for_writing), reusing the index kept in memory."""
        if self.vectors is None:
            vectors = open_for_writing(store, manifest)  # its file, if any, now holds its generation
            self.saved_generation = vectors.generation if (store.dir / FAISS_NAME).exists() else -1
            return vectors
        vectors = refresh_vector_index(store, self.vectors, manifest)  # another writer may have run
        if not vectors.rebuilt:
            vectors.repair = None  # catching up with our own unsaved syncs is no repair
        return vectors

    def finish(self, store: Store, vectors: VectorIndex, *, force: bool = False) -> None:
        """The writer's last step: save when due (see sync_and_save), else only catch up in memory."""
        manifest = store.manifest()
        self.vectors = refresh_vector_index(store, vectors, manifest)
        if self.vectors.rebuilt:
            self.saved_generation = -1  # a rebuilt index is saved at once
        due = force or time.monotonic() - self.saved_at >= self.interval or needs_new_layout(self.vectors, manifest)
        if self.pending and due:
            self.vectors = sync_and_save(store, self.vectors)
            self.saved_generation, self.saved_at = self.vectors.generation, time.monotonic()
        self.vectors.repair, self.vectors.rebuilt = None, False


def fold_delta(store: Store, vectors: VectorIndex) -> None:
    """Write an on-disk index's lists with its delta into a new data file, mapped from then on;
    the delta starts empty. Only the save that follows names the new file: until then the saved
    index file names the old one, which stays as it was."""
    delta = vectors.index
    old, new = data_file(delta.base), new_data_path(store.dir)
    crc = rewrite_lists(delta.base, delta.masked, delta.delta_ids, delta.delta_vectors, new)
    vectors.index = DeltaIndex(delta.base, base_ids=delta.ids())
    vectors.data_crc32, vectors.crc_of = crc, new.name
    if old is not None and old.name != vectors.saved_data:  # ours alone, superseded
        old.unlink(missing_ok=True)
    fault_point("delta_fold")  # a kill here leaves a data file that no saved index names


def save_vector_index(store: Store, vectors: VectorIndex) -> None:
    """Write to a temporary file, flush it to disk, then rename over the old one. An on-disk
    index's delta past its bound is folded into a new data file first (a writer's save alone)."""
    if isinstance(vectors.index, DeltaIndex) and fold_due(vectors.index):
        fold_delta(store, vectors)
    base = vectors.index.base if isinstance(vectors.index, DeltaIndex) else vectors.index
    data = data_file(base)  # written and flushed when it was made: only named here
    if data is not None and vectors.crc_of != data.name:
        vectors.data_crc32, vectors.crc_of = file_crc32(data), data.name
    if data is not None:
        base_file = _save_base(store, vectors, base, base_path(data))
        delta, parts = delta_section(vectors.index)
    else:
        base_file = _memory_base(store, vectors)
        delta, parts = _memory_delta(store, vectors)
    payload = b""  # the FAISS index is in the base file (older formats carried it here)
    crc = zlib.crc32(payload)
    for part in parts:
        crc = zlib.crc32(part, crc)
    header = json.dumps({
        "generation": vectors.generation,
        "count": vectors.count,
        "crc32": crc,
        "choice": asdict(vectors.choice),
        "trained_on": vectors.trained_on,
        "data_file": data.name if data is not None else None,
        "data_crc32": vectors.data_crc32 if data is not None else None,
        "data_bytes": data.stat().st_size if data is not None else None,
        "base_file": base_file.name,
        "base_crc32": vectors.base_crc32,
        "payload_bytes": len(payload),
        "delta": delta,
    }).encode()
    final = store.dir / FAISS_NAME
    temporary = store.dir / f"{FAISS_NAME}.tmp-{os.getpid()}"
    with open(temporary, "wb") as f:
        f.write(_MAGIC + struct.pack("<I", len(header)) + header)
        half = len(payload) // 2
        f.write(memoryview(payload)[:half])
        fault_point("faiss_save")  # a kill here must leave the old file intact
        f.write(memoryview(payload)[half:])
        for part in parts:
            f.write(part)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, final)
    _fsync_dir(store.dir)
    vectors.saved_data = data.name if data is not None else None
    fault_point("faiss_renamed")  # a kill here leaves a data or base file no saved index names
    _drop_data_files(store.dir, keep={vectors.saved_data, base_file.name})  # a reader mapping one keeps its pages


def _memory_base(store: Store, vectors: VectorIndex) -> Path:
    """An in-memory index's base file: the one it was loaded from or last saved to, until the ids
    changed since pass the delta's bound; then the whole index, written anew."""
    path = store.dir / vectors.base_of if vectors.base_of else None
    if path is None or not path.exists() or past_fold_bound(len(vectors.since_base), vectors.count):
        path = _save_base(store, vectors, vectors.index, new_base_path(store.dir))
        vectors.since_base = set()
    return path


def _memory_delta(store: Store, vectors: VectorIndex) -> tuple[dict, list[bytes]]:
    """The changes since an in-memory index's base file: every id changed is masked in the base,
    and those still live are carried with their vectors, read from DuckDB (the saved generation's)."""
    changed = np.asarray(sorted(vectors.since_base), np.int64)
    ids, embeddings = store.embeddings(changed) if len(changed) else (changed, np.zeros((0, vectors.index.d)))
    return section_of(ids, embeddings, changed)


def _save_base(store: Store, vectors: VectorIndex, base, path: Path) -> Path:
    """A base file (the FAISS index; an on-disk one's without its lists), written once: to a
    temporary file, flushed, renamed. An on-disk index's is named after its data file."""
    import faiss

    if vectors.base_of == path.name and path.exists():
        return path
    payload = faiss.serialize_index(base)
    temporary = store.dir / f"{path.name}.tmp-{os.getpid()}"
    with open(temporary, "wb") as f:
        f.write(memoryview(payload))
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    _fsync_dir(store.dir)
    fault_point("base_saved")  # a kill here leaves a base file no saved index names
    vectors.base_crc32, vectors.base_of = zlib.crc32(payload), path.name
    return path


def _read_base(path: Path, crc: int | None) -> np.ndarray:
    """A base file's bytes, mapped and checked against the checksum its index file recorded."""
    data = np.memmap(path, dtype=np.uint8, mode="r")
    if zlib.crc32(data) != crc:
        raise ValueError(f"index base file {path.name} damaged (checksum mismatch)")
    return data


def load_vector_file(path: Path, *, verify_data: bool = False,
                     known: tuple[str, np.ndarray] | None = None) -> VectorIndex:
    """Read and verify one index file; ValueError says what is wrong with it. The lists' data
    file of an on-disk index is checked for its size, and with `verify_data` (a writer, about to
    build on it) read through for its checksum too. `known`: (name, sorted ids) of a data file
    whose ids need not be read again if this index file names it (a reader reloading)."""
    import faiss

    data = np.memmap(path, dtype=np.uint8, mode="r")  # mapped, not copied: one index in memory
    header, tail = _split(data)
    try:
        choice = IndexChoice(**header["choice"])
        length = int(header.get("payload_bytes", len(tail)))  # a version-2 file: the payload alone
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"damaged header: {e}") from e
    if zlib.crc32(tail) != header.get("crc32") or not 0 <= length <= len(tail):
        raise ValueError("checksum mismatch (truncated or corrupted)")
    base_file = header.get("base_file")
    if base_file is not None and (length or Path(base_file).name != base_file):
        raise ValueError("damaged header: a base file beside a payload")
    payload = _read_base(path.parent / base_file, header.get("base_crc32")) if base_file else tail[:length]
    index = faiss.deserialize_index(payload, faiss.IO_FLAG_SKIP_IVF_DATA if choice.on_disk else 0)
    set_search_depth(index, choice.params)
    since_base: set[int] = set()
    if choice.on_disk:
        mapped = reopen_mapped(index, path.parent)
        if verify_data and header.get("data_crc32") is not None and file_crc32(mapped) != header["data_crc32"]:
            raise ValueError(f"list data file {mapped.name} damaged (checksum mismatch)")
        base_ids = known[1] if known is not None and known[0] == header.get("data_file") else None
        index = read_delta(index, header.get("delta") or {"vectors": 0, "masked": 0}, tail[length:], base_ids)
    elif base_file is not None:  # in memory: the base, then the changes since
        ids, vectors, masked = parse_section(int(index.d), header.get("delta") or {}, tail)
        if len(masked):
            index.remove_ids(masked)
        if len(ids):
            index.add_with_ids(vectors, ids)
        since_base = set(masked.tolist())
    elif length != len(tail):
        raise ValueError("damaged header: bytes after an in-memory index")
    if index.ntotal != header.get("count"):
        raise ValueError("vector count does not match its header")
    return VectorIndex(index, int(header["generation"]), choice, int(header.get("trained_on", 0)),
                       saved_data=header.get("data_file"), data_crc32=header.get("data_crc32"),
                       crc_of=header.get("data_file"), base_crc32=header.get("base_crc32"), base_of=base_file,
                       since_base=since_base)


def saved_index_current(store: Store, manifest: dict) -> bool:
    """Whether the saved index file holds the store's committed state, intact, checked without
    loading it: its header (generation, count, layout), its checksum, its base and data files'
    checksums. A run that changes no vector trusts this and loads nothing (at 100k images of 512
    floats the load is 0.25 s more than the checks); one that does loads it (see load_saved)."""
    from types import SimpleNamespace

    path = store.dir / FAISS_NAME
    try:
        header, tail = _split(np.memmap(path, dtype=np.uint8, mode="r"))
        saved = SimpleNamespace(count=int(header["count"]), choice=IndexChoice(**header["choice"]),
                                trained_on=int(header.get("trained_on", 0)))
        saved.index_type = saved.choice.index_type
        if (int(header["generation"]) != int(manifest.get("generation", 0)) or zlib.crc32(tail) != header["crc32"]
                or saved.count != len(store.live_ids()) or needs_new_layout(saved, manifest)):
            return False
        if (base_file := header.get("base_file")) is not None:
            if Path(base_file).name != base_file:
                return False
            _read_base(path.parent / base_file, header.get("base_crc32"))
        if header.get("data_file"):  # read through, as a writer always has: a flipped code byte shows nowhere else
            data = path.parent / header["data_file"]
            return header.get("data_bytes") in (None, data.stat().st_size) and file_crc32(data) == header["data_crc32"]
        return True
    except (OSError, ValueError, KeyError, TypeError):
        return False


def load_saved(store: Store) -> tuple[VectorIndex | None, str | None]:
    """A writer's load of the saved index file that saved_index_current passed earlier in its run,
    under its lock (the data file, never written after, is not read through again), as it is: a
    sync brings it up to date. (the index, None), or (None, why it is unusable)."""
    try:
        return _load(store.dir / FAISS_NAME), None
    except (OSError, ValueError, RuntimeError) as e:
        return None, f"rebuilt: index file unusable ({e})"


def _split(data) -> tuple[dict, np.ndarray]:
    """(JSON header, FAISS payload) of an index file's mapped bytes; ValueError if not ours."""
    if len(data) < len(_MAGIC) + 4 or bytes(data[:len(_MAGIC)]) not in (_MAGIC, *_OLDER_MAGICS):
        raise ValueError("not a vitsearch index file of this version")
    (length,) = struct.unpack_from("<I", bytes(data[len(_MAGIC):len(_MAGIC) + 4]))
    start = len(_MAGIC) + 4
    try:
        header = json.loads(bytes(data[start:start + length]))
    except ValueError as e:
        raise ValueError(f"damaged header: {e}") from e
    if not isinstance(header, dict):
        raise ValueError("damaged header: not an object")
    return header, data[start + length:]


def _load(path: Path, verify_data: bool = False, known: VectorIndex | None = None) -> VectorIndex:
    """load_vector_file, again if the data file it names was replaced by a writer's save between
    reading the index file and mapping the data (the new index file names the new one). `known`:
    an index in memory whose data file's ids need not be read again if the file names it too."""
    ids = None
    if known is not None and isinstance(known.index, DeltaIndex) and (mapped := data_file(known.index.base)):
        ids = (mapped.name, known.index.base_ids())
    for _ in range(2):
        try:
            return load_vector_file(path, verify_data=verify_data, known=ids)
        except FileNotFoundError:
            if not path.exists():
                raise
    return load_vector_file(path, verify_data=verify_data, known=ids)


def open_vector_index(store: Store, manifest: dict) -> VectorIndex:
    """The FAISS index matching DuckDB's committed state: loaded, caught up, or rebuilt."""
    path = store.dir / FAISS_NAME
    vectors, problem = None, None
    if path.exists():
        try:
            vectors = _load(path, verify_data=not store.read_only)
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
        behind = vectors.generation
        if _caught_up_by_log(store, vectors, manifest):
            repair = repair or f"caught up from generation {behind} to {generation}"
        else:  # the log was cut past it (a writer saved since): the saved file, caught up, else a rebuild
            vectors = _load_or_none(store.dir / FAISS_NAME, vectors)
            if vectors is None or not _caught_up_by_log(store, vectors, manifest):
                repair = f"rebuilt: index is at generation {behind}, store at {generation}"
                vectors = None
    if vectors is not None and not np.array_equal(vectors.ids(), store.live_ids()):
        repair = "rebuilt: index ids did not match the store"
        vectors = None
    rebuilt = vectors is None
    if rebuilt:
        vectors = rebuild(store, manifest)
    vectors.repair, vectors.rebuilt = repair, rebuilt
    return vectors


def _caught_up_by_log(store: Store, vectors: VectorIndex, manifest: dict) -> bool:
    """Bring `vectors` to the manifest's generation from the change log; False (untouched) when
    the log no longer reaches back to its generation."""
    generation = int(manifest.get("generation", 0))
    if not int(manifest.get("log_floor", 0)) <= vectors.generation <= generation:
        return False
    if vectors.generation < generation:
        _catch_up(store, vectors)
        vectors.generation = generation
    return True


def _load_or_none(path: Path, known: VectorIndex | None = None) -> VectorIndex | None:
    try:
        return _load(path, known=known)
    except (OSError, ValueError, RuntimeError):
        return None


def rebuild(store: Store, manifest: dict, index_type: str | None = None) -> VectorIndex:
    """A fresh index of every live embedding, of the preferred (or chosen) type, streamed from
    DuckDB a chunk at a time: the collection's embeddings are never all in memory at once."""
    ids, dim = store.live_ids(), int(manifest["dim"])
    preferred = index_type or manifest.get("index_type", "auto")
    budget = int(manifest.get("memory_budget", DEFAULT_MEMORY_BUDGET))
    index_type, on_disk = choose_layout(len(ids), dim, budget, preferred)
    data = new_data_path(_data_dir(store)) if on_disk else None
    index, choice = build_ann_streamed(ids, lambda: store.embedding_chunks(STREAM_CHUNK, ids), dim, index_type,
                                       data_path=data)
    _release_private(store, data)
    if choice.on_disk:
        index = DeltaIndex(index)
    return VectorIndex(index, int(manifest.get("generation", 0)), choice, len(ids))


def needs_new_layout(vectors: VectorIndex, manifest: dict) -> bool:
    """Whether an auto-chosen layout no longer suits the collection's size."""
    n = vectors.count
    preferred = manifest.get("index_type", "auto")
    budget = int(manifest.get("memory_budget", DEFAULT_MEMORY_BUDGET))
    wanted, on_disk = choose_layout(n, int(manifest["dim"]), budget, preferred)
    if preferred != "auto":  # a chosen IVF type built flat while the store was too small for it
        return ((vectors.index_type == "flat" != preferred and n >= IVF_MIN_VECTORS)
                or (vectors.index_type != "flat" and vectors.choice.on_disk != on_disk))
    if vectors.index_type == "flat":
        return wanted != "flat" and n > FLAT_MAX
    return (wanted != vectors.index_type or vectors.choice.on_disk != on_disk
            or n > RETRAIN_GROWTH * max(vectors.trained_on, 1))


def _catch_up(store: Store, vectors: VectorIndex) -> None:
    changed = store.changed_since(vectors.generation)
    if not len(changed):
        return
    ids, embeddings = store.embeddings(changed)
    if isinstance(vectors.index, DeltaIndex):  # a mapped data file is never changed: the delta takes it
        vectors.index.apply(changed, ids, embeddings)
        return
    vectors.index.remove_ids(changed)
    if len(ids):
        vectors.index.add_with_ids(embeddings, ids)
    vectors.since_base.update(changed.tolist())  # the next save carries them beside the base file


def _data_dir(store: Store) -> Path:
    """Where a new lists data file goes: the store's folder for a writer, whose save will name
    it; a temporary folder for a reader, which never writes into the store."""
    return private_data_dir() if store.read_only else store.dir


def _release_private(store: Store, data: Path | None) -> None:
    """A reader's data file is unlinked once mapped: the mapping keeps it until the index goes."""
    if store.read_only and data is not None:
        data.unlink(missing_ok=True)


def _drop_data_files(directory: Path, keep: set[str | None]) -> None:
    """Data and base files other than those named in `keep`."""
    for stale in [*directory.glob(f"*{DATA_SUFFIX}"), *directory.glob(f"*{BASE_SUFFIX}")]:
        if stale.name not in keep:
            stale.unlink(missing_ok=True)


def _saved_file_names(path: Path) -> tuple[bool, set[str | None]]:
    """(readable, the data and base files named by the index file at `path`), from its header alone."""
    try:
        header, _ = _split(np.memmap(path, dtype=np.uint8, mode="r"))
    except (OSError, ValueError):
        return False, set()
    return True, {header.get("data_file"), header.get("base_file")}


def clean_leftovers(store: Store) -> None:
    """Remove temporary files of saves that were killed midway, and data and base files no saved
    index names (a killed rebuild's, or one superseded before it was saved)."""
    for leftover in [*store.dir.glob(f"{FAISS_NAME}.tmp-*"), *store.dir.glob(f"*{BASE_SUFFIX}.tmp-*")]:
        leftover.unlink(missing_ok=True)
    saved = store.dir / FAISS_NAME
    readable, keep = _saved_file_names(saved) if saved.exists() else (True, set())
    if readable:  # else the index is rebuilt, and its save clears them
        _drop_data_files(store.dir, keep)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

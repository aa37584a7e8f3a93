"""IVF lists kept in a file beside the index and mapped, not loaded: the layout for collections
whose index does not fit the memory budget (what faiss's merge_ondisk makes, built here with a
bounded footprint).

The data file holds, list after list, each list's codes then its ids (faiss's
OnDiskInvertedLists layout, capacity = size); the index file keeps the list sizes and the data
file's name. A data file is written whole and flushed before any index file names it, and is
never changed after: changes to the collection go to a delta beside it (delta.py), folded past a
bound into a new file (the old lists minus removed ids, plus the added vectors). So a reader that
mapped the old file keeps a complete one, and a crash at any instant leaves the saved pair intact.

Building streams the collection twice (count each list's size, then encode each chunk and
write its entries at their lists' places): the process holds one chunk and the list table,
whatever the collection's size; the written pages are the kernel's page cache.
"""

from __future__ import annotations

import os
import tempfile
import uuid
import zlib
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..faults import fault_point

__all__ = ["DATA_SUFFIX", "BASE_SUFFIX", "base_path", "new_base_path", "new_data_path", "write_lists", "rewrite_lists",
           "map_lists", "reopen_mapped", "data_file", "private_data_dir", "file_crc32"]

DATA_SUFFIX = ".ivfdata"
# A saved FAISS index (vectors.py): for lists in a data file of the same name, the quantizer,
# codec and list offsets, as fixed as the data file, so written once beside it; for an index in
# memory, all of it, as of when it was written (the changes since are saved as a delta).
BASE_SUFFIX = ".ivfbase"
_ID_BYTES = 8  # faiss ids are int64

Chunks = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]


def new_data_path(directory: Path) -> Path:
    return Path(directory) / f"vectors-{uuid.uuid4().hex[:16]}{DATA_SUFFIX}"


def base_path(data: Path) -> Path:
    """Where the index over the lists of data file `data` is kept."""
    return data.with_suffix(BASE_SUFFIX)


def new_base_path(directory: Path) -> Path:
    """A new base file for an index held in memory (no data file)."""
    return Path(directory) / f"vectors-{uuid.uuid4().hex[:16]}{BASE_SUFFIX}"


def private_data_dir() -> Path:
    """Where a reader (which never writes into the store) keeps the data file it had to make."""
    return Path(tempfile.gettempdir())


def data_file(index) -> Path | None:
    """The data file an index's lists are mapped from; None for lists in memory."""
    lists = _on_disk_lists(index)
    return Path(lists.filename) if lists is not None else None


def write_lists(index, chunks: Chunks, path: Path, *, each_chunk=None) -> None:
    """Fill the trained, empty IVF `index` from `chunks()` (ids, vectors) into a new data file at
    `path`, and map its lists from there. `each_chunk(ids, vectors)` sees every chunk once."""
    import faiss

    ivf = faiss.extract_index_ivf(index)
    sizes = np.zeros(ivf.nlist, np.uint64)
    for _, vectors in chunks():
        sizes += np.bincount(_assign(ivf, vectors), minlength=ivf.nlist).astype(np.uint64)
    starts = _list_starts(sizes, ivf.code_size)
    filled = np.zeros(ivf.nlist, np.uint64)
    with _new_data_file(path) as fd:
        os.ftruncate(fd, int(starts[-1]))
        for ids, vectors in chunks():
            lists = _assign(ivf, vectors)
            codes = _encode(ivf, vectors, lists)
            order = np.argsort(lists, kind="stable")
            present, first, counts = np.unique(lists[order], return_index=True, return_counts=True)
            for j, at, count in zip(present, first, counts, strict=True):
                rows = order[at:at + count]
                done = int(filled[j])
                os.pwrite(fd, codes[rows].tobytes(), int(starts[j]) + done * ivf.code_size)
                os.pwrite(fd, np.ascontiguousarray(ids[rows], np.int64).tobytes(),
                          int(starts[j]) + int(sizes[j]) * ivf.code_size + done * _ID_BYTES)
                filled[j] += np.uint64(count)
            fault_point("ondisk_write")  # a kill here leaves a partial file no saved index names
            if each_chunk is not None:
                each_chunk(ids, vectors)
        if not np.array_equal(filled, sizes):
            raise RuntimeError("the collection changed while its lists were written")
    map_lists(index, path, sizes)


def rewrite_lists(index, removed: np.ndarray, added_ids: np.ndarray, added: np.ndarray, path: Path) -> int:
    """A new data file at `path`: the index's current lists without `removed`, plus `added`
    (ids, vectors); the index's lists are then mapped from it. The old file is left as it was.
    Returns the new file's checksum (see file_crc32), taken as it is written in order."""
    import faiss

    ivf = faiss.extract_index_ivf(index)
    new_lists = _assign(ivf, added) if len(added) else np.zeros(0, np.int64)
    new_codes = _encode(ivf, added, new_lists) if len(added) else np.zeros((0, ivf.code_size), np.uint8)
    order = np.argsort(new_lists, kind="stable")
    bounds = np.searchsorted(new_lists[order], np.arange(ivf.nlist + 1))
    removed = np.asarray(removed, np.int64)
    sizes = np.zeros(ivf.nlist, np.uint64)
    crc = 0
    with _new_data_file(path) as fd:
        with os.fdopen(fd, "wb", closefd=False) as out:
            for j in range(ivf.nlist):
                ids, codes = _read_list(ivf.invlists, j, ivf.code_size)
                keep = ~np.isin(ids, removed)
                rows = order[bounds[j]:bounds[j + 1]]
                for part in (codes[keep], new_codes[rows], ids[keep], np.asarray(added_ids[rows], np.int64)):
                    block = np.ascontiguousarray(part).tobytes()
                    out.write(block)
                    crc = zlib.crc32(block, crc)
                sizes[j] = int(keep.sum()) + len(rows)
                if j == ivf.nlist // 2:
                    fault_point("ondisk_write")
    map_lists(index, path, sizes)
    return crc


@contextmanager
def _new_data_file(path: Path):
    """A file descriptor for a data file that must not exist yet; flushed to disk when the block
    ends, removed if it raised (a kill leaves it to clean_leftovers: no saved index names it)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        yield fd
        os.fsync(fd)
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def map_lists(index, path: Path, sizes: np.ndarray) -> None:
    """Point the IVF's lists at the data file `path` (read-only, mapped) holding `sizes` entries."""
    import faiss

    ivf = faiss.extract_index_ivf(index)
    sizes = np.ascontiguousarray(sizes, np.uint64)
    total = int(_list_starts(sizes, ivf.code_size)[-1])
    if Path(path).stat().st_size != total:
        raise ValueError(f"list data file {Path(path).name} has the wrong size")
    lists = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(path))
    lists.set_all_lists_sizes(faiss.swig_ptr(sizes))
    lists.totsize = total
    _map(lists)
    ivf.replace_invlists(lists, True)
    lists.this.disown()  # the index owns (and frees, unmapping) its lists
    ivf.ntotal = int(sizes.sum())
    if ivf is not index:
        index.ntotal = ivf.ntotal


def reopen_mapped(index, directory: Path) -> Path:
    """After a load with faiss.IO_FLAG_SKIP_IVF_DATA: map the lists from the data file of the
    same name in `directory` (a store may have been moved since it was saved)."""
    lists = _on_disk_lists(index)
    path = Path(directory) / Path(lists.filename).name
    if not path.exists():
        raise FileNotFoundError(f"list data file {path.name} is missing")
    if path.stat().st_size != lists.totsize:
        raise ValueError(f"list data file {path.name} has the wrong size (truncated?)")
    lists.filename = str(path)
    _map(lists)
    return path


def file_crc32(path: Path) -> int:
    """The data file's checksum, read through in blocks (recorded at save, verified by writers)."""
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(16 << 20):
            crc = zlib.crc32(block, crc)
    return crc


def _map(lists) -> None:
    lists.read_only = True  # PROT_READ: the file is never written through the mapping
    if lists.totsize:
        lists.do_mmap()


def _on_disk_lists(index):
    import faiss

    if isinstance(index, (faiss.IndexIDMap, faiss.IndexIDMap2)):
        return None
    try:
        ivf = faiss.extract_index_ivf(index)
    except (RuntimeError, TypeError):
        return None
    lists = faiss.downcast_InvertedLists(ivf.invlists)
    return lists if isinstance(lists, faiss.OnDiskInvertedLists) else None


def _list_starts(sizes: np.ndarray, code_size: int) -> np.ndarray:
    """Byte offset of each list, and the file's size last."""
    lengths = sizes.astype(np.int64) * (code_size + _ID_BYTES)
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def _assign(ivf, vectors: np.ndarray) -> np.ndarray:
    _, lists = ivf.quantizer.search(np.ascontiguousarray(vectors, np.float32), 1)
    return np.ascontiguousarray(lists.ravel(), np.int64)


def _encode(ivf, vectors: np.ndarray, lists: np.ndarray) -> np.ndarray:
    import faiss

    vectors = np.ascontiguousarray(vectors, np.float32)
    codes = np.empty((len(vectors), ivf.code_size), np.uint8)
    ivf.encode_vectors(len(vectors), faiss.swig_ptr(vectors), faiss.swig_ptr(lists), faiss.swig_ptr(codes))
    return codes


def _read_list(invlists, j: int, code_size: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    size = invlists.list_size(j)
    if not size:
        return np.zeros(0, np.int64), np.zeros((0, code_size), np.uint8)
    ids = faiss.rev_swig_ptr(invlists.get_ids(j), size).astype(np.int64)  # copies out of the mapping
    codes = faiss.rev_swig_ptr(invlists.get_codes(j), size * code_size).reshape(size, code_size).copy()
    return ids, codes

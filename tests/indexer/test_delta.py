"""Changes beside an on-disk index go to a delta: searches through it equal brute force, small
changes leave the data file as it was (writer and readers alike), a fold past the bound equals
a fresh build, old index files still load, and a kill at any step of a fold or a save leaves a
store that opens equal to DuckDB."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import FakeEncoder
from tests.search.test_search import write_varied_images
from vitsearch.indexer import build_index
from vitsearch.indexer.build import save_deferred
from vitsearch.indexer.reindex import reindex
from vitsearch.indexer.store import delta as delta_module
from vitsearch.indexer.store import vectors as vector_file
from vitsearch.indexer.store.delta import DeltaIndex, fold_due
from vitsearch.indexer.store.ondisk import BASE_SUFFIX, DATA_SUFFIX, base_path, data_file
from vitsearch.indexer.store.store import LIVE, Store
from vitsearch.indexer.store.vectors import (
    FAISS_NAME,
    DeferredSaves,
    load_vector_file,
    open_vector_index,
    rebuild,
)
from vitsearch.search import ImageIndex

REPO = Path(__file__).resolve().parents[2]
SMALL_BUDGET = 40_000  # 1,200 fake 48-d vectors as IVF-Flat do not fit: lists on disk (as test_ondisk)
COUNT = 1200  # the bound is then 2% of it: 24 changes


@pytest.fixture
def store(tmp_path):
    folder, store = tmp_path / "photos", tmp_path / "store"
    write_varied_images(folder, COUNT)
    build_index([folder], store, encoder=FakeEncoder(), batch_size=512)
    vectors = reindex(store, index_type="ivf-flat", memory_budget=SMALL_BUDGET)  # exact codes: brute force holds
    assert vectors.choice.on_disk and isinstance(vectors.index, DeltaIndex)
    return store


def data_files(store) -> list[tuple[str, int]]:
    """(name, mtime_ns) of each lists data file in the store."""
    return sorted((p.name, p.stat().st_mtime_ns) for p in store.glob(f"*{DATA_SUFFIX}"))


def change_images(folder: Path, *, add: int = 0, remove: int = 0, change: int = 0, seed: int = 5) -> None:
    """Add new images (under new-SEED/), delete and overwrite (new pixels, same path) existing ones."""
    if add:
        write_varied_images(folder / f"new-{seed}", add, seed=seed)
    existing = sorted(p for p in folder.rglob("img-*.png") if not p.parent.name.startswith("new"))
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(existing), size=remove + change, replace=False)
    for i in picked[:remove]:
        existing[i].unlink()
    for n, i in enumerate(picked[remove:]):
        pixels = rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)
        Image.fromarray(pixels).resize((20 + n, 20), Image.Resampling.NEAREST).save(existing[i])


def exact_search(vectors, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """The index's top-k ids with every list probed (IVF-Flat then scores exactly)."""
    vectors.index.nprobe = vectors.choice.nlist
    _, found = vectors.index.search(queries, k)
    return found


def brute_force(store_dir, queries: np.ndarray, k: int = 10, where: str = LIVE) -> np.ndarray:
    """The oracle: top-k of DuckDB's live embeddings by inner product, ties by id."""
    db = Store(store_dir)
    allowed = np.asarray([r["id"] for r in db.records("id", where)], np.int64)
    ids, embeddings = db.embeddings(allowed)
    scores = queries @ embeddings.T
    order = np.lexsort((np.broadcast_to(ids, scores.shape), -scores), axis=1)[:, :k]
    return ids[order]


def queries_of(store_dir, n: int = 12, seed: int = 0) -> np.ndarray:
    """Stored embeddings of some rows, and random unit vectors."""
    ids, embeddings = Store(store_dir).embeddings()
    rng = np.random.default_rng(seed)
    random = rng.standard_normal((n, embeddings.shape[1])).astype(np.float32)
    random /= np.linalg.norm(random, axis=1, keepdims=True)
    return np.concatenate([embeddings[rng.choice(len(ids), n, replace=False)], random])


def assert_equals_store(store_dir) -> None:
    """The index opens without a rebuild and answers as brute force over DuckDB does."""
    db = Store(store_dir)
    vectors = open_vector_index(db, db.manifest())
    assert vectors.repair is None or vectors.repair.startswith("caught up"), vectors.repair
    assert np.array_equal(vectors.ids(), db.live_ids())
    queries = queries_of(store_dir)
    assert np.array_equal(exact_search(vectors, queries), brute_force(store_dir, queries))


def embeddings_by_id(store_dir) -> dict[int, np.ndarray]:
    ids, embeddings = Store(store_dir).embeddings()
    return dict(zip(ids.tolist(), embeddings, strict=True))


def expected_delta(before: dict[int, np.ndarray], store_dir) -> tuple[np.ndarray, np.ndarray]:
    """(masked, delta ids) the changes from `before` (the lists' build) to DuckDB now make."""
    now = embeddings_by_id(store_dir)
    changed = {i for i in before.keys() & now.keys() if not np.array_equal(before[i], now[i])}
    masked = (before.keys() - now.keys()) | changed
    return np.sort(list(masked)), np.sort(list((now.keys() - before.keys()) | changed))


def hit_ids(index: ImageIndex, queries: np.ndarray, where: str | None = None) -> np.ndarray:
    index.vectors.index.nprobe = index.vectors.choice.nlist
    return np.asarray([[h.id for h in index.search(q, k=10, where=where)] for q in queries])


def test_searches_through_the_delta_equal_brute_force(store, tmp_path):
    folder = tmp_path / "photos"
    first, before = data_files(store), embeddings_by_id(store)
    change_images(folder, add=6, remove=5, change=4)
    build_index([folder], store, encoder=FakeEncoder())
    deferred = DeferredSaves(interval=3600)  # as the watcher does: changes kept in memory, then saved
    change_images(folder, add=1, seed=7)
    build_index([folder], store, encoder=FakeEncoder(), deferred=deferred)  # its first change is saved at once
    change_images(folder, add=3, remove=2, change=3, seed=6)
    build_index([folder], store, encoder=FakeEncoder(), deferred=deferred)

    vectors = deferred.vectors
    assert 0 < vectors.index.pending <= 24 and not fold_due(vectors.index)
    masked, delta = expected_delta(before, store)
    assert np.array_equal(vectors.index.masked, masked), "removed and changed ids are masked"
    assert np.array_equal(vectors.index.delta_ids, delta), "added and changed ids are in the delta"
    assert vectors.count == len(Store(store).live_ids()) == COUNT + 10 - 7
    queries = queries_of(store)
    assert np.array_equal(exact_search(vectors, queries), brute_force(store, queries))

    reader = ImageIndex.open(store, encoder=FakeEncoder())  # caught up from the log, in its own delta
    for where, sql in ((None, LIVE), ("width < 30", f"{LIVE} AND width < 30")):
        assert np.array_equal(hit_ids(reader, queries, where), brute_force(store, queries, where=sql))
    assert data_files(store) == first, "the data file was neither rewritten nor replaced"
    assert save_deferred(store, deferred)
    assert_equals_store(store)


def test_small_changes_are_saved_in_the_index_file_beside_the_same_data_file(store, tmp_path):
    folder = tmp_path / "photos"
    first, before = data_files(store), embeddings_by_id(store)
    for round_ in range(3):
        change_images(folder, add=2, remove=1, change=1, seed=10 + round_)
        build_index([folder], store, encoder=FakeEncoder())  # each run syncs and saves
        assert data_files(store) == first, f"round {round_}: the data file keeps its name and mtime"
    saved = load_vector_file(store / FAISS_NAME)
    assert saved.generation == int(Store(store).manifest()["generation"])
    masked, delta = expected_delta(before, store)
    assert np.array_equal(saved.index.masked, masked) and np.array_equal(saved.index.delta_ids, delta)
    assert_equals_store(store)


def test_a_fold_past_the_bound_writes_a_new_data_file_equal_to_a_fresh_build(store, tmp_path):
    folder = tmp_path / "photos"
    first = data_files(store)
    change_images(folder, add=20, remove=6, change=6)  # 32 changes: past 2% of 1,200
    build_index([folder], store, encoder=FakeEncoder())
    assert len(data_files(store)) == 1 and data_files(store)[0][0] != first[0][0], "folded into a new file"
    saved = load_vector_file(store / FAISS_NAME, verify_data=True)  # its checksum, taken as it was written
    assert saved.index.pending == 0 and saved.count == COUNT + 14
    assert_equals_store(store)

    db = Store(store)
    fresh = rebuild(db, db.manifest())  # read-only: built in a private folder
    queries = queries_of(store, seed=3)
    assert np.array_equal(saved.ids(), fresh.ids())
    assert np.array_equal(exact_search(saved, queries), exact_search(fresh, queries))


def test_a_reader_sees_a_writers_change_without_a_new_data_file(store, tmp_path, monkeypatch):
    folder = tmp_path / "photos"
    reader = ImageIndex.open(store, encoder=FakeEncoder())
    mapped = data_file(reader.vectors.index.base)
    assert mapped.parent == store, "the store's own data file"
    reader.vectors.ids()  # the data file's ids are read once, on the first check

    def must_not_run(*_, **__):
        raise AssertionError("a reader's refresh read, copied or rebuilt the lists")

    def refresh_reading_no_lists() -> bool:
        with monkeypatch.context() as patched:
            for name in ("rewrite_lists", "file_crc32", "build_ann_streamed"):
                patched.setattr(vector_file, name, must_not_run)
            patched.setattr(delta_module, "index_ids", must_not_run)  # the lists' ids, read once
            return reader.refresh()

    deferred = DeferredSaves(interval=3600)
    write_varied_images(folder / "first", 1, seed=20)
    build_index([folder], store, encoder=FakeEncoder(), deferred=deferred)  # the watcher's first change: saved
    write_varied_images(folder / "new", 3, seed=21)
    build_index([folder], store, encoder=FakeEncoder(), deferred=deferred)
    added = sorted((folder / "new").rglob("*.png"))
    assert refresh_reading_no_lists() and len(reader) == COUNT + 4  # caught up from the log
    assert reader.search(str(added[1]), k=1)[0].path == str(added[1])
    assert data_file(reader.vectors.index.base) == mapped and len(reader.vectors.index.delta_ids) == 4

    write_varied_images(folder / "new2", 2, seed=22)
    build_index([folder], store, encoder=FakeEncoder(), deferred=deferred)
    assert save_deferred(store, deferred)  # the log is cut past the reader: it reloads the saved delta
    assert refresh_reading_no_lists() and len(reader) == COUNT + 6 and reader.vectors.repair is None
    assert data_file(reader.vectors.index.base) == mapped
    newest = sorted((folder / "new2").rglob("*.png"))[1]
    assert reader.search(str(newest), k=1)[0].path == str(newest)
    assert_equals_store(store)


def inline_payload(path: Path) -> tuple[dict, bytes]:
    """(header, FAISS payload) of a saved on-disk index file, its base file's payload read in."""
    raw = path.read_bytes()
    (length,) = struct.unpack_from("<I", raw, 8)
    header = json.loads(raw[12:12 + length])
    assert header.pop("payload_bytes") == 0, "an on-disk index keeps its FAISS index in the base file"
    base = path.parent / header.pop("base_file")
    assert zlib.crc32(base.read_bytes()) == header.pop("base_crc32")
    return header, base.read_bytes()


def write_version_2(path: Path) -> None:
    """Rewrite an index file as the format before the delta wrote it (no delta, no payload length)."""
    header, payload = inline_payload(path)
    assert header.pop("delta") == {"vectors": 0, "masked": 0}
    header["crc32"] = zlib.crc32(payload)
    encoded = json.dumps(header).encode()
    path.write_bytes(b"VITSRCH2" + struct.pack("<I", len(encoded)) + encoded + payload)


def write_version_3(path: Path) -> None:
    """Rewrite an index file as the format before the base file wrote it (the payload inline)."""
    header, payload = inline_payload(path)
    raw = path.read_bytes()
    delta = raw[12 + struct.unpack_from("<I", raw, 8)[0]:]
    header["payload_bytes"], header["crc32"] = len(payload), zlib.crc32(delta, zlib.crc32(payload))
    encoded = json.dumps(header).encode()
    path.write_bytes(b"VITSRCH3" + struct.pack("<I", len(encoded)) + encoded + payload + delta)


@pytest.mark.parametrize("older", [write_version_2, write_version_3])
def test_an_index_file_of_an_older_format_loads_and_catches_up(store, tmp_path, older):
    if older is write_version_3:  # a delta in the file, to be read after the inline payload
        change_images(tmp_path / "photos", add=2, remove=1)
        build_index([tmp_path / "photos"], store, encoder=FakeEncoder())
    count = len(Store(store).live_ids())
    older(store / FAISS_NAME)
    for base in store.glob(f"*{BASE_SUFFIX}"):
        base.unlink()  # an older vitsearch wrote none
    reader = ImageIndex.open(store, encoder=FakeEncoder())
    assert reader.vectors.repair is None and isinstance(reader.vectors.index, DeltaIndex)
    gone = Store(store).live_ids()[:3]
    with Store(store, read_only=False).transaction() as tx:  # a change the old file does not hold
        tx.delete(gone)
    assert_equals_store(store)  # the old file, caught up from the log
    report = build_index([tmp_path / "photos"], store, encoder=FakeEncoder())  # the 3 files come back
    assert report.repair.startswith("caught up"), "the writer built on the old file: no rebuild"
    assert (store / FAISS_NAME).read_bytes()[:8] == b"VITSRCH4" and len(Store(store).live_ids()) == count
    assert_equals_store(store)


def test_a_save_of_the_delta_writes_the_delta_alone(store, tmp_path):
    """The FAISS index over the lists is in a base file written with the data file; each save
    rewrites the index file, which then holds a header and the delta only."""
    folder = tmp_path / "photos"
    bases = sorted((p.name, p.stat().st_mtime_ns) for p in store.glob(f"*{BASE_SUFFIX}"))
    assert len(bases) == 1 and bases[0][0] == base_path(Path(data_files(store)[0][0])).name
    for round_ in range(2):
        change_images(folder, add=2, remove=1, change=1, seed=20 + round_)
        build_index([folder], store, encoder=FakeEncoder())
        assert sorted((p.name, p.stat().st_mtime_ns) for p in store.glob(f"*{BASE_SUFFIX}")) == bases
    saved = load_vector_file(store / FAISS_NAME)
    delta_bytes = len(saved.index.delta_ids) * (8 + 4 * saved.index.d) + len(saved.index.masked) * 8
    assert (store / FAISS_NAME).stat().st_size < delta_bytes + 4096 < (store / bases[0][0]).stat().st_size
    assert_equals_store(store)


@pytest.mark.parametrize("harm", ["damage", "remove"])
def test_a_damaged_or_missing_base_file_is_found_and_rebuilt(store, tmp_path, harm):
    (base,) = store.glob(f"*{BASE_SUFFIX}")
    if harm == "damage":
        raw = bytearray(base.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        base.write_bytes(bytes(raw))
    else:
        base.unlink()
    reader = ImageIndex.open(store, encoder=FakeEncoder())
    assert reader.vectors.rebuilt and len(reader) == COUNT
    assert ("checksum mismatch" if harm == "damage" else "No such file") in reader.vectors.repair
    report = build_index([tmp_path / "photos"], store, encoder=FakeEncoder())
    assert report.repair.startswith("rebuilt")
    assert len(list(store.glob(f"*{BASE_SUFFIX}"))) == 1
    assert_equals_store(store)


def test_a_damaged_delta_is_found_and_rebuilt(store, tmp_path):
    change_images(tmp_path / "photos", add=3, change=2)
    build_index([tmp_path / "photos"], store, encoder=FakeEncoder())
    raw = bytearray((store / FAISS_NAME).read_bytes())
    raw[-20] ^= 0xFF  # a byte of the delta (after the FAISS payload)
    (store / FAISS_NAME).write_bytes(bytes(raw))
    reader = ImageIndex.open(store, encoder=FakeEncoder())
    assert "checksum mismatch" in reader.vectors.repair and len(reader) == COUNT + 3


CHILD = """
import sys
from tests.conftest import FakeEncoder
from vitsearch.indexer import build_index
build_index(sys.argv[2:], sys.argv[1], encoder=FakeEncoder())
"""


def index_in_child(store, folder, fault: str | None = None) -> subprocess.CompletedProcess:
    """A writer's run in its own process (as `vitsearch index` is), killed at `fault`."""
    env = {name: value for name, value in os.environ.items() if name != "VITSEARCH_FAULT"}
    if fault:
        env["VITSEARCH_FAULT"] = fault
    return subprocess.run([sys.executable, "-c", CHILD, str(store), str(folder)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


# (fault point, changes): mid-way through the fold's new data file, after it, after its base file
# (neither named yet by the index file), halfway through the index file's save, after its rename
# and before the old data file goes; and the save of a small delta (no fold), halfway and after
# the rename.
KILLS = [("ondisk_write:1", 30), ("delta_fold:1", 30), ("base_saved:1", 30), ("faiss_save:1", 30),
         ("faiss_renamed:1", 30), ("faiss_save:1", 3), ("faiss_renamed:1", 3)]


@pytest.mark.slow  # six killed child processes, each loading the store: the slow step runs them
@pytest.mark.parametrize("fault, changes", KILLS)
def test_a_kill_while_the_delta_is_folded_or_saved_leaves_a_store_equal_to_duckdb(store, tmp_path, fault, changes):
    folder = tmp_path / "photos"
    saved_index, first = (store / FAISS_NAME).read_bytes(), data_files(store)
    write_varied_images(folder / "new", changes, seed=31)
    killed = index_in_child(store, folder, fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    if fault.startswith(("ondisk_write", "delta_fold", "base_saved", "faiss_save")):
        assert (store / FAISS_NAME).read_bytes() == saved_index, "the saved index file is untouched"
    assert first[0] in data_files(store), "and so is the data file it named"
    assert len(ImageIndex.open(store, encoder=FakeEncoder())) == COUNT + changes
    assert_equals_store(store)  # DuckDB committed the run's rows: the saved file is caught up from its log

    done = index_in_child(store, folder)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(data_files(store)) == 1 and (data_files(store) == first) == (changes < 24)
    assert not list(store.glob(f"{FAISS_NAME}.tmp-*")), "the killed save's leftovers are cleaned"
    assert [p.name for p in store.glob(f"*{BASE_SUFFIX}")] == [base_path(Path(data_files(store)[0][0])).name]
    assert_equals_store(store)
    assert load_vector_file(store / FAISS_NAME).generation == int(Store(store).manifest()["generation"])

"""An index past the memory budget keeps its IVF lists in a mapped data file beside it: same
answers as in memory, changes written to a new file (never into a mapped one), readers never
writing into the store, and a kill at any step leaving a store that opens and resumes."""

from __future__ import annotations

import signal

import numpy as np
import pytest

from tests.conftest import FakeEncoder, run_cli
from tests.search.test_search import write_varied_images
from vitsearch.indexer import build_index
from vitsearch.indexer.build import save_deferred
from vitsearch.indexer.reindex import reindex
from vitsearch.indexer.store.ann import DEFAULT_MEMORY_BUDGET
from vitsearch.indexer.store.ondisk import DATA_SUFFIX
from vitsearch.indexer.store.store import Store
from vitsearch.indexer.store.vectors import FAISS_NAME, DeferredSaves, load_vector_file, open_vector_index
from vitsearch.search import ImageIndex, store_info

SMALL_BUDGET = 40_000  # 1,200 fake 48-d vectors as IVF-SQ8 (56 B each) do not fit: lists on disk


def data_files(store) -> list[str]:
    return sorted(p.name for p in store.glob(f"*{DATA_SUFFIX}"))


def answers(store, queries, where=None) -> list[list[int]]:
    index = ImageIndex.open(store, encoder=FakeEncoder())
    return [[h.id for h in index.search(q, k=10, where=where)] for q in queries]


def assert_matches_store(store) -> None:
    """Every live row is in the index once, and finds itself first."""
    db = Store(store)
    vectors = open_vector_index(db, db.manifest())
    assert np.array_equal(vectors.ids(), db.live_ids())
    ids, embeddings = db.embeddings(db.live_ids()[::97])
    vectors.index.nprobe = vectors.choice.nlist
    _, found = vectors.index.search(embeddings, 1)
    assert np.array_equal(found[:, 0], ids)


@pytest.fixture
def store(tmp_path):
    folder, store = tmp_path / "photos", tmp_path / "store"
    write_varied_images(folder, 1200)
    build_index([folder], store, encoder=FakeEncoder(), batch_size=512)
    return store


def test_lists_past_the_budget_go_to_disk_and_answer_as_in_memory(store):
    queries = [3, 250, 777, 1100]
    reindex(store, index_type="ivf-sq8")
    in_memory = [answers(store, queries), answers(store, queries, where="width < 30")]
    assert data_files(store) == [] and store_info(store)["index_on_disk"] is False

    vectors = reindex(store, index_type="ivf-sq8", memory_budget=SMALL_BUDGET)
    assert vectors.choice.on_disk and len(data_files(store)) == 1
    info = store_info(store)
    assert info["index_on_disk"] is True and info["images"] == info["vectors"] == 1200
    assert [answers(store, queries), answers(store, queries, where="width < 30")] == in_memory
    assert load_vector_file(store / FAISS_NAME).choice.on_disk

    vectors = reindex(store, index_type="auto", memory_budget=4_000)
    assert (vectors.index_type, vectors.choice.on_disk) == ("ivf-sq8", True), "auto past every in-memory fit"
    kept = data_files(store)
    report = build_index([store.parent / "photos"], store, encoder=FakeEncoder())
    assert report.repair is None and data_files(store) == kept, "an unchanged run keeps the layout and its file"

    reindex(store, index_type="auto", memory_budget=DEFAULT_MEMORY_BUDGET)
    assert data_files(store) == [], "back in memory: the data file is removed with the save that stops naming it"


def test_changes_write_a_new_data_file_and_a_running_reader_keeps_its_own(store, tmp_path):
    reindex(store, index_type="ivf-flat", memory_budget=SMALL_BUDGET)
    first = data_files(store)
    reader = ImageIndex.open(store, encoder=FakeEncoder())
    before = reader.search(5, k=3)

    more = tmp_path / "more"
    write_varied_images(more, 30, seed=9)  # past the delta's bound (2% of the collection): folded
    report = build_index([tmp_path / "photos", more], store, encoder=FakeEncoder())
    assert report.added == 30 and report.repair is None
    assert len(data_files(store)) == 1 and data_files(store) != first, "a new file; the mapped one was not written"
    assert [h.id for h in reader.search(5, k=3)] == [h.id for h in before], "the reader's mapping outlives the unlink"
    assert reader.refresh() and len(reader) == 1230
    added = next(iter(sorted(more.rglob("*.png"))))
    assert reader.search(str(added), k=1)[0].path == str(added)
    assert_matches_store(store)


def test_a_reader_catches_up_without_writing_into_the_store(store, tmp_path):
    reindex(store, index_type="ivf-flat", memory_budget=SMALL_BUDGET)
    deferred = DeferredSaves(interval=3600)
    more = tmp_path / "more"
    write_varied_images(more / "a", 2, seed=3)
    build_index([tmp_path / "photos", more], store, encoder=FakeEncoder(), deferred=deferred)
    saved = data_files(store)  # the first sync is saved at once
    write_varied_images(more / "b", 5, seed=4)
    build_index([tmp_path / "photos", more], store, encoder=FakeEncoder(), deferred=deferred)
    assert deferred.pending and load_vector_file(store / FAISS_NAME).saved_data == saved[0], "the saved file is behind"
    files = data_files(store)  # the saved one: the changes are in the writer's delta

    reader = ImageIndex.open(store, encoder=FakeEncoder())
    assert reader.vectors.repair.startswith("caught up") and len(reader) == 1207
    assert data_files(store) == files, "a reader catches up in its own delta, in memory"
    added = sorted((more / "b").rglob("*.png"))[2]
    assert reader.search(str(added), k=1)[0].path == str(added)

    assert save_deferred(store, deferred)
    assert data_files(store) == saved, "a small delta is saved in the index file, beside the same data file"
    assert_matches_store(store)


@pytest.mark.parametrize("fault", ["ondisk_write:1", "faiss_save:1"])
def test_a_kill_while_lists_are_written_leaves_the_store_open_and_resumable(store, fault):
    reindex(store, index_type="ivf-flat", memory_budget=SMALL_BUDGET)
    saved, saved_index = data_files(store), (store / FAISS_NAME).read_bytes()

    killed = run_cli("reindex", "--store", store, "--index-type", "ivf-sq8", env={"VITSEARCH_FAULT": fault})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (store / FAISS_NAME).read_bytes() == saved_index, "the saved index is untouched"
    assert saved[0] in data_files(store), "and so is the data file it names"
    reader = ImageIndex.open(store, encoder=FakeEncoder())
    assert reader.vectors.repair is None and len(reader) == 1200

    done = run_cli("reindex", "--store", store, "--index-type", "ivf-sq8")
    assert done.returncode == 0, done.stderr
    assert "lists on disk" in done.stderr
    assert len(data_files(store)) == 1 and saved[0] not in data_files(store), "the partial file is gone"
    assert load_vector_file(store / FAISS_NAME).choice.index_type == "ivf-sq8"
    assert_matches_store(store)


def test_a_truncated_damaged_or_missing_data_file_is_found_and_rebuilt(store, tmp_path):
    reindex(store, index_type="ivf-flat", memory_budget=SMALL_BUDGET)
    data = store / data_files(store)[0]
    original = data.read_bytes()

    data.write_bytes(original[:-100])
    reader = ImageIndex.open(store, encoder=FakeEncoder())
    assert "wrong size" in reader.vectors.repair and len(reader) == 1200
    assert data_files(store) == [data.name], "a reader rebuilds in a private file"

    damaged = bytearray(original)
    damaged[len(damaged) // 3] ^= 0xFF  # one code byte: sizes and ids still agree with the store
    data.write_bytes(bytes(damaged))
    report = build_index([tmp_path / "photos"], store, encoder=FakeEncoder())
    assert "checksum mismatch" in report.repair, "a writer reads the file through before building on it"
    assert data.name not in data_files(store) and len(data_files(store)) == 1
    assert_matches_store(store)

    (store / data_files(store)[0]).unlink()
    reader = ImageIndex.open(store, encoder=FakeEncoder())
    assert "missing" in reader.vectors.repair and len(reader) == 1200

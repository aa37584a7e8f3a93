"""An index held in memory is saved as a base file and the changes since: a small change writes
the change, not the collection; past the bound a new base is written; either way the saved pair
loads equal to DuckDB, and a kill at any step of a save leaves a store that opens equal to it."""

from __future__ import annotations

import signal

import numpy as np
import pytest

from tests.conftest import FakeEncoder
from tests.indexer.test_delta import change_images, index_in_child
from tests.search.test_search import write_varied_images
from vitsearch.indexer import build_index
from vitsearch.indexer.store.ondisk import BASE_SUFFIX
from vitsearch.indexer.store.store import Store
from vitsearch.indexer.store.vectors import FAISS_NAME, load_vector_file, rebuild
from vitsearch.search import ImageIndex

COUNT = 600  # flat, in memory; the bound is 2% of it: 12 changed ids


@pytest.fixture
def store(tmp_path):
    folder, store = tmp_path / "photos", tmp_path / "store"
    write_varied_images(folder, COUNT)
    build_index([folder], store, encoder=FakeEncoder(), batch_size=512)
    saved = load_vector_file(store / FAISS_NAME)
    assert not saved.choice.on_disk and not saved.since_base
    return store


def bases(store) -> list[tuple[str, int]]:
    return sorted((p.name, p.stat().st_mtime_ns) for p in store.glob(f"*{BASE_SUFFIX}"))


def assert_saved_equals_store(store) -> None:
    """The saved pair, loaded, holds DuckDB's live vectors and answers as a fresh build does."""
    db = Store(store)
    saved = load_vector_file(store / FAISS_NAME)
    assert saved.generation == int(db.manifest()["generation"])
    assert np.array_equal(saved.ids(), db.live_ids())
    fresh = rebuild(db, db.manifest())
    ids, embeddings = db.embeddings()
    queries = embeddings[:: max(1, len(ids) // 20)]
    k = 10
    saved_scores, saved_ids = saved.index.search(queries, k)
    fresh_scores, fresh_ids = fresh.index.search(queries, k)
    assert np.allclose(saved_scores, fresh_scores, atol=1e-5)
    assert np.array_equal(saved_ids[:, 0], fresh_ids[:, 0])


def test_a_small_change_saves_the_change_beside_the_same_base(store, tmp_path):
    first = bases(store)
    base_bytes = (store / first[0][0]).stat().st_size
    change_images(tmp_path / "photos", add=2, remove=1, change=1)
    build_index([tmp_path / "photos"], store, encoder=FakeEncoder())
    assert bases(store) == first, "the base file is neither rewritten nor replaced"
    saved = load_vector_file(store / FAISS_NAME)
    assert len(saved.since_base) == 4  # 2 added, 1 removed, 1 changed
    assert (store / FAISS_NAME).stat().st_size < 4096 < base_bytes
    assert_saved_equals_store(store)
    reader = ImageIndex.open(store, encoder=FakeEncoder())
    assert reader.vectors.repair is None and len(reader) == COUNT + 1


def test_past_the_bound_a_new_base_is_written_and_the_old_one_goes(store, tmp_path):
    first = bases(store)
    change_images(tmp_path / "photos", add=10, remove=3, change=3)  # 16 ids: past 2% of 600
    build_index([tmp_path / "photos"], store, encoder=FakeEncoder())
    now = bases(store)
    assert len(now) == 1 and now[0][0] != first[0][0]
    assert not load_vector_file(store / FAISS_NAME).since_base
    assert_saved_equals_store(store)


# A kill halfway through the index file's save, after a new base file (not yet named), and after
# the index file's rename, before the old base goes: small changes, and changes past the bound.
KILLS = [("faiss_save:1", 3), ("faiss_renamed:1", 3), ("base_saved:1", 20), ("faiss_save:1", 20),
         ("faiss_renamed:1", 20)]


@pytest.mark.slow  # killed child processes, each loading the store: the slow step runs them
@pytest.mark.parametrize("fault, changes", KILLS)
def test_a_kill_while_saving_leaves_a_store_equal_to_duckdb(store, tmp_path, fault, changes):
    folder = tmp_path / "photos"
    saved_index = (store / FAISS_NAME).read_bytes()
    write_varied_images(folder / "new", changes, seed=41)
    killed = index_in_child(store, folder, fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    if fault.startswith(("faiss_save", "base_saved")):
        assert (store / FAISS_NAME).read_bytes() == saved_index, "the saved index file is untouched"
    reader = ImageIndex.open(store, encoder=FakeEncoder())
    assert reader.vectors.repair is None or reader.vectors.repair.startswith("caught up"), reader.vectors.repair
    assert len(reader) == COUNT + changes

    done = index_in_child(store, folder)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(bases(store)) == 1 and not list(store.glob("*.tmp-*")), "the killed save's leftovers are cleaned"
    assert_saved_equals_store(store)

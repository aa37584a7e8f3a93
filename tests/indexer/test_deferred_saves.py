"""Repeated syncs of one store (what `index --watch` runs) keep FAISS in memory and write its file
only when due: readers and restarts catch up from DuckDB's change log meanwhile, so nothing is
lost, and a reader that missed a saved generation reloads the file instead of rebuilding."""

from __future__ import annotations

import os

from tests.conftest import write_scenes
from tests.indexer.test_sync import assert_consistent
from vitsearch.indexer import build_index
from vitsearch.indexer.build import save_deferred
from vitsearch.indexer.store.store import Store
from vitsearch.indexer.store.vectors import FAISS_NAME, DeferredSaves, load_vector_file
from vitsearch.search import ImageIndex


def saved_generation(store) -> int:
    return load_vector_file(store / FAISS_NAME).generation


def generation(store) -> int:
    return int(Store(store).manifest()["generation"])


def test_syncs_between_saves_leave_the_file_and_lose_nothing(tmp_path, fake_encoder):
    folder, store = tmp_path / "photos", tmp_path / "store"
    write_scenes(folder, range(5))
    deferred = DeferredSaves(interval=3600)
    build_index([folder], store, encoder=fake_encoder, deferred=deferred)
    assert saved_generation(store) == generation(store), "the first sync (the whole folder) is saved at once"
    first = saved_generation(store)
    reader = ImageIndex.open(store, encoder=fake_encoder)
    assert len(reader) == 5

    write_scenes(folder, range(5, 8))
    os.remove(folder / "scene-000.jpg")
    before = (store / FAISS_NAME).read_bytes()
    report = build_index([folder], store, encoder=fake_encoder, deferred=deferred)
    assert report.added == 3 and report.removed == 1 and report.repair is None
    assert (store / FAISS_NAME).read_bytes() == before, "not due: the file is not rewritten"
    assert generation(store) > first and deferred.pending
    assert reader.refresh() and len(reader) == 7, "a running reader catches up from the change log"
    hits = reader.search(str(folder / "scene-006.jpg"), k=1)
    assert hits[0].path.endswith("scene-006.jpg")
    assert_consistent(store)  # a fresh open (a restart after a crash) catches up too

    assert save_deferred(store, deferred) and not deferred.pending
    assert saved_generation(store) == generation(store)
    assert not save_deferred(store, deferred), "nothing left to write"


def test_a_due_save_cuts_the_log_and_a_reader_behind_it_reloads_the_file(tmp_path, fake_encoder):
    folder, store = tmp_path / "photos", tmp_path / "store"
    write_scenes(folder, range(4))
    deferred = DeferredSaves(interval=0)  # every sync is due
    build_index([folder], store, encoder=fake_encoder, deferred=deferred)
    reader = ImageIndex.open(store, encoder=fake_encoder)
    for seeds in (range(4, 6), range(6, 9)):
        write_scenes(folder, seeds)
        build_index([folder], store, encoder=fake_encoder, deferred=deferred)
        assert saved_generation(store) == generation(store)
    assert int(Store(store).manifest()["log_floor"]) > reader.vectors.generation, "the log was cut past the reader"
    assert reader.refresh() and len(reader) == 9
    assert reader.vectors.repair is None, "the reader reloaded the saved file: no rebuild"
    assert_consistent(store)

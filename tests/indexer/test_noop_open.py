"""A run that changes no vector checks the saved index file without loading it; a run that
changes one loads it then, and either way the index ends equal to DuckDB."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import FakeEncoder, write_scenes
from vitsearch.indexer import build_index
from vitsearch.indexer.store import vectors as vector_file
from vitsearch.indexer.store.store import Store
from vitsearch.indexer.store.vectors import FAISS_NAME, load_vector_file


@pytest.fixture
def library(tmp_path):
    photos, store = tmp_path / "photos", tmp_path / "store"
    write_scenes(photos, range(8))
    build_index([photos], store, encoder=FakeEncoder())
    return photos, store


@pytest.fixture
def loads(monkeypatch):
    """Counts full loads of an index file (the spy calls the real loader)."""
    count = [0]
    real = vector_file.load_vector_file

    def counted(*args, **kwargs):
        count[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(vector_file, "load_vector_file", counted)
    return count


def assert_index_equals_store(store) -> None:
    saved = load_vector_file(store / FAISS_NAME)
    db = Store(store)
    assert saved.generation == int(db.manifest()["generation"])
    assert np.array_equal(saved.ids(), db.live_ids())


def test_a_no_op_run_loads_no_index_and_writes_none(library, loads):
    photos, store = library
    before = (store / FAISS_NAME).stat().st_mtime_ns
    report = build_index([photos], store, encoder=FakeEncoder())
    assert report.unchanged == 8 and report.repair is None
    assert loads[0] == 0, "the saved file was checked, not loaded"
    assert (store / FAISS_NAME).stat().st_mtime_ns == before


def test_a_run_that_changes_a_vector_loads_the_checked_file_and_syncs_it(library, loads):
    photos, store = library
    write_scenes(photos / "new", range(20, 23))
    sorted(photos.glob("*.*"))[0].unlink()
    report = build_index([photos], store, encoder=FakeEncoder())
    assert report.embedded == 3 and report.repair is None
    assert loads[0] == 1
    assert_index_equals_store(store)


@pytest.mark.parametrize("harm", ["checksum", "generation"])
def test_a_damaged_or_stale_index_file_is_not_trusted(library, harm):
    photos, store = library
    path = store / FAISS_NAME
    if harm == "checksum":
        raw = bytearray(path.read_bytes())
        raw[-10] ^= 0xFF
        path.write_bytes(bytes(raw))
    else:  # DuckDB moved on without the file (a kill before its save)
        gone = Store(store).live_ids()[:2]
        with Store(store, read_only=False).transaction() as tx:
            tx.delete(gone)
    report = build_index([photos], store, encoder=FakeEncoder())
    assert report.repair and report.repair.startswith("rebuilt" if harm == "checksum" else "caught up"), report.repair
    assert_index_equals_store(store)

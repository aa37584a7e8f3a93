"""SIGKILL the real indexer at named instants; every time the store opens and ends as a clean run."""

from __future__ import annotations

import signal

import numpy as np
import pytest

from tests.conftest import run_cli, write_scenes
from vitsearch.indexer.store.store import Store
from vitsearch.indexer.store.vectors import open_vector_index
from vitsearch.search import store_info

# (fault point, visit): mid-embedding, just before and just after a DuckDB commit,
# before the FAISS save, and halfway through writing the FAISS file.
# In this order each point is sure to be reached: a commit may take in every file left, and
# before_faiss and faiss_save come in every run.
KILLS = [("embed", 2), ("before_commit", 1), ("after_commit", 1), ("before_faiss", 1), ("faiss_save", 1)]


def snapshot(store) -> dict[str, tuple]:
    with Store(store).connect() as con:
        rows = con.execute("SELECT path, status, content_hash, embedding FROM images").fetchall()
    return {p: (s, h, None if e is None else np.asarray(e, np.float32)) for p, s, h, e in rows}


def assert_invariants(store) -> None:
    db = Store(store)
    vectors = open_vector_index(db, db.manifest())
    assert np.array_equal(vectors.ids(), db.live_ids())
    info = store_info(store)
    assert info["images"] + info["videos"] == info["vectors"]


def assert_same(result: dict, clean: dict) -> None:
    assert result.keys() == clean.keys()
    for path, (status, content_hash, vector) in clean.items():
        got = result[path]
        assert got[:2] == (status, content_hash), path
        if vector is not None:
            # Batches may be split differently after a resume: equal up to float rounding.
            assert float(got[2] @ vector) > 0.99999, path


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("crash") / "photos"
    write_scenes(folder, range(20))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff junk")
    return folder


@pytest.fixture(scope="module")
def clean(photos, tmp_path_factory):
    store = tmp_path_factory.mktemp("clean") / "store"
    result = run_cli("index", photos, "--store", store, "--weights", "random", "--batch-size", "4")
    assert result.returncode == 0, result.stderr
    return snapshot(store)


def test_kills_at_every_named_instant_then_resume(photos, clean, tmp_path):
    store = tmp_path / "store"
    for point, visit in KILLS:
        result = run_cli("index", photos, "--store", store, "--weights", "random", "--batch-size", "4",
                         env={"VITSEARCH_FAULT": f"{point}:{visit}"})
        assert result.returncode == -signal.SIGKILL, (point, result.stderr[-2000:])
        assert_invariants(store)  # the store opens after every kill
    result = run_cli("index", photos, "--store", store, "--batch-size", "4", "--json")
    assert result.returncode == 0, result.stderr
    assert_invariants(store)
    assert_same(snapshot(store), clean)
    assert not list(store.glob("*.tmp-*")), "leftovers of the killed FAISS save are cleaned"


def test_kill_during_faiss_save_keeps_the_old_file_loadable(photos, tmp_path):
    store = tmp_path / "store"
    assert run_cli("index", photos, "--store", store, "--weights", "random").returncode == 0
    before = (store / "vectors.faiss").read_bytes()
    write_scenes(photos.parent / "more", range(30, 33))
    result = run_cli("index", photos, photos.parent / "more", "--store", store,
                     env={"VITSEARCH_FAULT": "faiss_save:1"})
    assert result.returncode == -signal.SIGKILL
    assert (store / "vectors.faiss").read_bytes() == before
    assert list(store.glob("vectors.faiss.tmp-*")), "the half-written file was a temporary"
    assert store_info(store)["vectors"] == 23  # caught up in memory from the change log

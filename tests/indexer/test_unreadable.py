"""Unreadable files and folders: a re-index records them as a fresh index does, says so, and
keeps the rows of a folder it cannot list; all comes back when the permissions do."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from tests.conftest import write_scenes
from tests.indexer.test_sync import assert_consistent
from tests.indexer.unprivileged import index_in_child
from vitsearch.indexer.store.store import Store


def rows(store) -> dict[str, tuple]:
    """path -> (id, status, error, embedding)."""
    with Store(store).connect() as con:
        found = con.execute("SELECT path, id, status, error, embedding FROM images").fetchall()
    return {p: (i, s, e, None if v is None else np.asarray(v)) for p, i, s, e, v in found}


def live(store) -> dict[str, np.ndarray]:
    return {p: v for p, (_, s, _, v) in rows(store).items() if s == "ok"}


def same_search(a, b) -> bool:
    """Both stores hold the same searchable files with the same vectors."""
    la, lb = live(a), live(b)
    return la.keys() == lb.keys() and all(np.allclose(la[p], lb[p]) for p in la)


@pytest.fixture
def work(tmp_path):
    write_scenes(tmp_path / "photos", range(4))
    write_scenes(tmp_path / "photos" / "album", range(4, 7))
    yield tmp_path
    for folder, _, _ in os.walk(tmp_path):
        os.chmod(folder, 0o755)  # pytest may remove it


@pytest.mark.e2e  # the real CLI or model in child processes
def test_a_file_made_unreadable_fails_as_in_a_fresh_index_and_comes_back(work):
    photos, store = work / "photos", work / "store"
    index_in_child(photos, store)
    target = photos / "scene-001.jpg"
    row_id = rows(store)[str(target)][0]
    os.chmod(target, 0)  # same size, same mtime: only a read can tell
    report = index_in_child(photos, store)
    assert [str(target), "unreadable", "cannot read file: Permission denied"] in report["failures"]
    assert rows(store)[str(target)][:3] == (row_id, "failed", "unreadable")
    assert_consistent(store)  # out of FAISS, so out of search
    fresh = index_in_child(photos, work / "fresh")
    assert fresh["failures"] == report["failures"]
    assert {p: r[1:3] for p, r in rows(store).items()} == {p: r[1:3] for p, r in rows(work / "fresh").items()}
    assert same_search(store, work / "fresh")
    assert index_in_child(photos, store)["failures"] == report["failures"], "retried, and said, each run"
    os.chmod(target, 0o644)
    back = index_in_child(photos, store)
    assert (back["failed"], back["updated"]) == (0, 1)
    assert rows(store)[str(target)][:3] == (row_id, "ok", None)
    assert_consistent(store)


@pytest.mark.e2e  # the real CLI or model in child processes
@pytest.mark.parametrize("mode", [0o000, 0o600], ids=["no-listing", "no-search"])
def test_an_unreadable_folder_is_said_and_its_rows_kept_failed(work, mode):
    photos, store = work / "photos", work / "store"
    album = photos / "album"
    index_in_child(photos, store)
    before = rows(store)
    os.chmod(album, mode)
    report = index_in_child(photos, store)
    assert report["removed"] == 0 and report["failed"] == 1
    assert [(p, r) for p, r, _ in report["failures"]] == [(str(album), "unreadable")]
    assert "Permission denied" in report["failures"][0][2]
    after = rows(store)
    assert after.keys() == before.keys(), "the rows of a folder that cannot be listed are not deleted"
    for path, (row_id, status, error, _) in after.items():
        under = path.startswith(f"{album}/")
        want = ("failed", "unreadable") if under else ("ok", None)
        assert (row_id, status, error) == (before[path][0], *want)
    assert_consistent(store)
    fresh = index_in_child(photos, work / "fresh")
    assert fresh["failures"] == report["failures"] and fresh["failed"] == 1, "a fresh index says the same"
    assert same_search(store, work / "fresh")
    again = index_in_child(photos, store)
    assert (again["failures"], again["unchanged"], again["updated"]) == (report["failures"], 4, 0)
    assert rows(store).keys() == before.keys()
    os.chmod(album, 0o755)
    back = index_in_child(photos, store)
    assert (back["failed"], back["removed"], back["added"]) == (0, 0, 0)
    assert {p: r[:3] for p, r in rows(store).items()} == {p: r[:3] for p, r in before.items()}, "same ids, all ok"
    shutil.rmtree(work / "fresh")
    index_in_child(photos, work / "fresh")
    assert same_search(store, work / "fresh")
    assert_consistent(store)

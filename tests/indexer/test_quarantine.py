"""Quarantine moves on a real store: manifest first, rows follow, undo restores bytes and rows,
and a kill in the middle of the moves leaves something the undo and the next sync both repair."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

from tests.conftest import REPO, FakeEncoder, write_scenes
from tests.indexer.test_sync import assert_consistent
from vitsearch.indexer import build_index
from vitsearch.indexer.store.quarantine import latest_manifest, quarantine_files, undo_quarantine
from vitsearch.indexer.store.store import Store


def _files(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def _statuses(store):
    return {r["path"].rsplit("/", 1)[1]: r["status"] for r in Store(store).records("path, status", "true")}


def test_quarantine_follows_the_store_and_undo_restores(tmp_path):
    photos, store = tmp_path / "photos", tmp_path / "store"
    write_scenes(photos, range(4))
    build_index([photos], store, encoder=FakeEncoder())
    before = _files(photos)
    ids = {r["path"].rsplit("/", 1)[1]: r["id"] for r in Store(store).records("id, path")}
    report = quarantine_files(store, [ids["scene-001.jpg"], ids["scene-002.jpg"], 999])
    assert [m.source.rsplit("/", 1)[1] for m in report.moved] == ["scene-001.jpg", "scene-002.jpg"]
    assert report.skipped and "not an indexed image" in report.skipped[0][1]
    assert json.loads(report.manifest.read_text())["state"] == "applied"
    assert set(_files(photos)) == {"scene-000.jpg", "scene-003.jpg"}
    assert _statuses(store)["scene-001.jpg"] == "quarantined"
    assert_consistent(store)
    assert build_index([photos], store, encoder=FakeEncoder()).removed == 0, "a sync leaves them aside"

    restored = undo_quarantine(store)
    assert len(restored.moved) == 2 and _files(photos) == before
    assert set(_statuses(store).values()) == {"ok"} and latest_manifest(store / ".quarantine") is None
    assert_consistent(store)
    assert build_index([photos], store, encoder=FakeEncoder()).embedded == 0


def test_a_kill_between_moves_is_undone_and_resynced(tmp_path):
    photos, store = tmp_path / "photos", tmp_path / "store"
    write_scenes(photos, range(4))
    build_index([photos], store, encoder=FakeEncoder())
    before = _files(photos)
    ids = [r["id"] for r in Store(store).records("id, path")]
    code = ("import sys; from vitsearch.indexer.store.quarantine import quarantine_files; "
            "quarantine_files(sys.argv[1], [int(i) for i in sys.argv[2:]])")
    child = subprocess.run([sys.executable, "-c", code, str(store), *map(str, ids)], cwd=REPO,
                           env={"VITSEARCH_FAULT": "quarantine_move:3", "PATH": "/usr/bin:/bin"})
    assert child.returncode == -9
    assert len(_files(photos)) == 2, "two files moved before the kill"
    manifest = latest_manifest(store / ".quarantine")
    assert json.loads(manifest.read_text())["state"] == "applying"
    restored = undo_quarantine(store)
    assert len(restored.moved) == 4 and _files(photos) == before
    assert set(_statuses(store).values()) == {"ok"}
    assert_consistent(store)
    assert build_index([photos], store, encoder=FakeEncoder()).embedded == 0

"""The quarantine trusted with the only copy: undo moves only what this store's apply wrote, moves
across file systems never leave a truncated file under a final name and are settled from the
intact side, an interrupted apply is finished by the next one, and a keeper must be there."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, FakeEncoder, run_cli, scene_bytes, write_scenes
from tests.indexer.test_sync import assert_consistent
from tests.tmpfs import mounted_tmpfs
from vitsearch.indexer import build_index
from vitsearch.indexer.errors import ConfigError
from vitsearch.indexer.store.quarantine import latest_manifest, quarantine_files, settle_quarantine, undo_quarantine
from vitsearch.indexer.store.safe_move import partial_path
from vitsearch.indexer.store.store import Store


def _digests(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _ids(store) -> dict[str, int]:
    return {Path(r["path"]).name: r["id"] for r in Store(store).records("id, path", "true")}


def _status(store) -> dict[str, str]:
    return {Path(r["path"]).name: r["status"] for r in Store(store).records("path, status", "true")}


def _library(root: Path, store: Path, count: int = 4) -> dict[str, int]:
    write_scenes(root, range(count))
    build_index([root], store, encoder=FakeEncoder())
    return _ids(store)


def _child(code: str, *args, fault: str) -> int:
    env = {"VITSEARCH_FAULT": fault, "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=REPO, env=env).returncode


APPLY = ("import sys, json; from vitsearch.indexer.store.quarantine import quarantine_files; "
         "quarantine_files(sys.argv[1], [int(i) for i in sys.argv[2:]])")
UNDO = "import sys; from vitsearch.indexer.store.quarantine import undo_quarantine; undo_quarantine(sys.argv[1])"


# 1. undo trusts only this store's own moves

def _forged(folder: Path, source: str, target: str, size: int, row_id: int = 1, digest=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "manifest-29991231-235959-000000000.json"
    manifest.write_text(json.dumps({"state": "applied", "moves": [
        {"id": row_id, "source": source, "target": target, "size": size, "mtime_ns": 0, "content_hash": digest}]}))
    return manifest


def test_undo_refuses_a_manifest_that_names_another_file(tmp_path):
    photos, store, elsewhere = tmp_path / "photos", tmp_path / "store", tmp_path / "elsewhere"
    _library(photos, store)
    elsewhere.mkdir()
    secret = elsewhere / "tax-return.pdf"
    secret.write_bytes(b"not a photo of the library")
    grabbed = photos / "grabbed.pdf"
    # handed in from anywhere, and dropped into the quarantine to be picked up by a plain --undo
    handed = _forged(tmp_path / "mine", str(grabbed), str(secret), secret.stat().st_size)
    dropped = _forged(store / ".quarantine", str(grabbed), str(secret), secret.stat().st_size)
    for manifest in (handed, None):
        report = undo_quarantine(store, manifest)
        assert not report.moved and report.skipped and "refused" in report.skipped[0][1]
        assert secret.read_bytes() == b"not a photo of the library" and not grabbed.exists()
    assert dropped.exists(), "a refused manifest is left as it was"
    # the user's own manifest is undone by a plain --undo, though the dropped one sorts later
    ids = _ids(store)
    before = _digests(photos)
    own = quarantine_files(store, [ids["scene-001.jpg"]]).manifest
    assert own.name < dropped.name
    restored = undo_quarantine(store)
    assert restored.manifest == own and len(restored.moved) == 1 and not restored.skipped
    assert _digests(photos) == before


def test_undo_refuses_an_entry_whose_target_or_bytes_are_not_the_moved_ones(tmp_path):
    photos, store = tmp_path / "photos", tmp_path / "store"
    ids = _library(photos, store)
    report = quarantine_files(store, [ids["scene-001.jpg"]])
    manifest = report.manifest
    entry = json.loads(manifest.read_text())["moves"][0]
    # the row's own source, but a target outside the quarantine
    stray = tmp_path / "stray.jpg"
    stray.write_bytes(Path(entry["target"]).read_bytes())
    forged = _forged(tmp_path / "forged", entry["source"], str(stray), entry["size"], entry["id"],
                     entry["content_hash"])
    refused = undo_quarantine(store, forged)
    assert not refused.moved and "outside this store's quarantine" in refused.skipped[0][1]
    assert stray.exists() and not Path(entry["source"]).exists()
    # the quarantined copy replaced by other bytes of the same size: not the file that was moved
    target = Path(entry["target"])
    original = target.read_bytes()
    target.write_bytes(bytes(len(original)))
    changed = undo_quarantine(store, manifest)
    assert not changed.moved and "not the file that was moved" in changed.skipped[0][1]
    assert not Path(entry["source"]).exists(), "nothing was put in the library"
    target.write_bytes(original)
    assert len(undo_quarantine(store, manifest).moved) == 1
    assert Path(entry["source"]).read_bytes() == original


def test_undo_of_a_file_that_is_no_manifest_says_so(tmp_path):
    photos, store = tmp_path / "photos", tmp_path / "store"
    _library(photos, store, 1)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ConfigError, match="not a vitsearch quarantine manifest"):
        undo_quarantine(store, text)
    with pytest.raises(ConfigError, match="no such quarantine manifest: .*nowhere.json"):
        undo_quarantine(store, tmp_path / "nowhere.json")
    for args in (("--undo", text), ("--undo", tmp_path / "nowhere.json")):
        result = run_cli("dupes", "--store", store, *args)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert str(args[1]) in result.stderr


def test_undo_removes_the_folders_it_emptied(tmp_path):
    photos, store = tmp_path / "photos", tmp_path / "store"
    ids = _library(photos, store)
    quarantine_files(store, [ids["scene-001.jpg"], ids["scene-002.jpg"]])
    undo_quarantine(store)
    left = [p for p in (store / ".quarantine").rglob("*") if not p.name.endswith(".undone")]
    assert left == []


# 2. across file systems: the store on a tmpfs, the library on disk

@pytest.fixture
def split(tmp_path):
    with mounted_tmpfs(tmp_path / "fast") as fast:
        yield tmp_path / "photos", fast / "store"


@pytest.mark.parametrize("point", ["move_copied", "move_renamed"])
def test_a_kill_inside_an_apply_across_file_systems_is_finished_by_the_next(split, point):
    photos, store = split
    ids = _library(photos, store)
    before = _digests(photos)
    assert _child(APPLY, store, *ids.values(), fault=f"{point}:2") == -9
    for path, digest in before.items():  # never a truncated file under a final name
        if os.path.exists(path):
            assert _digests(Path(path).parent).get(path) == digest
    manifest = latest_manifest(store / ".quarantine")
    assert json.loads(manifest.read_text())["state"] == "applying"

    notes = settle_quarantine(store)
    assert notes and "interrupted apply" in notes[0]
    assert not any(photos.iterdir()), "every file finished its move"
    assert not list((store / ".quarantine").rglob("*.vitsearch-partial"))
    assert json.loads(manifest.read_text())["state"] == "applied"
    assert set(_status(store).values()) == {"quarantined"}
    assert_consistent(store)
    undo_quarantine(store)
    assert _digests(photos) == before


@pytest.mark.parametrize("point", ["move_copied", "move_renamed"])
def test_a_kill_inside_an_undo_across_file_systems_is_finished_by_the_next(split, point):
    photos, store = split
    ids = _library(photos, store)
    before = _digests(photos)
    quarantine_files(store, list(ids.values()))
    assert _child(UNDO, store, fault=f"{point}:2") == -9
    for path in (str(p) for p in photos.iterdir() if not p.name.endswith(".vitsearch-partial")):
        assert _digests(photos)[path] == before[path], "a library path holds the photo or nothing"
    assert json.loads(latest_manifest(store / ".quarantine").read_text())["state"] == "undoing"
    report = undo_quarantine(store)
    assert not report.skipped and _digests(photos) == before
    assert not [p for p in (store / ".quarantine").rglob("*") if p.is_file() and not p.name.endswith(".undone")]
    assert set(_status(store).values()) == {"ok"}
    assert_consistent(store)


def test_a_partial_copy_left_at_a_library_path_is_replaced_and_a_stranger_is_not(split):
    photos, store = split
    ids = _library(photos, store)
    before = _digests(photos)
    report = quarantine_files(store, [ids["scene-001.jpg"], ids["scene-002.jpg"]])
    one, two = (m for m in report.moved)
    Path(one.source).write_bytes(Path(one.target).read_bytes()[:1000])  # what a copy to the final name left
    Path(two.source).write_bytes(b"the user's new file")
    undone = undo_quarantine(store)
    assert _digests(photos)[one.source] == before[one.source]
    assert [why for _, why in undone.skipped] == [
        f"its old place is taken by another file; the quarantined copy stays at {two.target} "
        "(move the other file away, then undo again)"]
    assert Path(two.source).read_bytes() == b"the user's new file"
    assert hashlib.sha256(Path(two.target).read_bytes()).hexdigest() == before[two.source]


def test_a_partial_name_never_outlives_a_repair(split):
    photos, store = split
    ids = _library(photos, store, 2)
    report = quarantine_files(store, [ids["scene-001.jpg"]])
    move = report.moved[0]
    Path(partial_path(move.source)).write_bytes(b"half")  # a killed copy back into the library
    undo_quarantine(store)
    assert not os.path.exists(partial_path(move.source))
    assert sorted(p.name for p in photos.iterdir()) == ["scene-000.jpg", "scene-001.jpg"]


# 8. an interrupted apply is finished (and said) by the next apply

def test_rerunning_apply_after_a_kill_finishes_the_interrupted_one(tmp_path):
    photos, store = tmp_path / "photos", tmp_path / "store"
    write_scenes(photos, range(2))
    for n in range(3):
        (photos / f"scene-000-copy-{n}.jpg").write_bytes((photos / "scene-000.jpg").read_bytes())
    build_index([photos], store, encoder=FakeEncoder())
    before = _digests(photos)
    flags = ("dupes", "--store", store, "--resolve", "shortest-path,oldest-file", "--apply")
    killed = run_cli(*flags, env={"VITSEARCH_FAULT": "quarantine_move:2"})
    assert killed.returncode == -9
    (store / ".quarantine" / "manifest-20000101-000000-000000000.tmp").write_text("{")  # a killed manifest write
    dry = run_cli("dupes", "--store", store, "--resolve", "shortest-path")
    assert "interrupted" in dry.stderr
    again = run_cli(*flags)
    assert again.returncode == 0, again.stderr
    assert "an interrupted apply" in again.stderr and "manifest None" not in again.stderr
    assert sorted(p.name for p in photos.iterdir()) == ["scene-000.jpg", "scene-001.jpg"]
    assert not list((store / ".quarantine").glob("*.tmp"))
    states = [json.loads(m.read_text())["state"] for m in (store / ".quarantine").glob("manifest-*.json")]
    assert states == ["applied"]
    assert run_cli("dupes", "--store", store, "--undo").returncode == 0
    assert _digests(photos) == before


def test_an_apply_that_moves_nothing_says_so(tmp_path):
    photos, store = tmp_path / "photos", tmp_path / "store"
    write_scenes(photos, range(2))
    copy = photos / "scene-000-copy.jpg"
    copy.write_bytes((photos / "scene-000.jpg").read_bytes())
    build_index([photos], store, encoder=FakeEncoder())
    os.utime(copy, ns=(0, 0))  # changed since indexing: planned, then refused at the move
    result = run_cli("dupes", "--store", store, "--resolve", "shortest-path", "--apply")
    assert result.returncode == 0 and "moved nothing" in result.stderr and "None" not in result.stderr
    assert copy.exists()


# 4. the keeper must be there, as indexed, and be another file

def test_a_keeper_gone_before_the_move_stops_its_group(tmp_path):
    photos, store = tmp_path / "photos", tmp_path / "store"
    ids = _library(photos, store, 3)
    keeper, copy = photos / "scene-000.jpg", ids["scene-001.jpg"]
    keeper.unlink()
    report = quarantine_files(store, [copy], keepers={copy: ids["scene-000.jpg"]})
    assert not report.moved and "keeper" in report.skipped[0][1]
    assert (photos / "scene-001.jpg").exists() and report.manifest is None
    same = ids["scene-002.jpg"]
    report = quarantine_files(store, [same], keepers={same: same})
    assert not report.moved and (photos / "scene-002.jpg").exists()


# found by probing: names used again, syncs in between, keepers at repair time, moved stores

def test_a_name_used_again_never_meets_the_older_quarantined_copy(tmp_path):
    photos, store = tmp_path / "photos", tmp_path / "store"
    ids = _library(photos, store, 3)
    old = photos / "scene-000.jpg"
    first = quarantine_files(store, [ids["scene-000.jpg"]]).moved[0]
    old_bytes = Path(first.target).read_bytes()
    old.write_bytes((photos / "scene-001.jpg").read_bytes())  # a new photo under the recycled name
    build_index([photos], store, encoder=FakeEncoder())
    reused = _ids(store)["scene-000.jpg"]
    assert _child(APPLY, store, reused, fault="quarantine_move:1") == -9
    notes = settle_quarantine(store)
    assert notes and Path(first.target).read_bytes() == old_bytes, "the older copy is untouched"
    assert not old.exists()
    # undo the newest, then the first: each copy goes home in turn
    undo_quarantine(store)
    assert old.read_bytes() == (photos / "scene-001.jpg").read_bytes()
    refused = undo_quarantine(store)
    assert "its old place is taken by another file" in refused.skipped[0][1], refused.skipped
    old.rename(photos / "moved-away.jpg")
    assert len(undo_quarantine(store).moved) == 1 and old.read_bytes() == old_bytes


def test_finishing_an_interrupted_apply_checks_each_keeper_again(tmp_path):
    photos, store = tmp_path / "photos", tmp_path / "store"
    write_scenes(photos, range(2))
    for n in range(2):
        (photos / f"scene-00{n}-copy.jpg").write_bytes((photos / f"scene-00{n}.jpg").read_bytes())
    build_index([photos], store, encoder=FakeEncoder())
    ids = _ids(store)
    copies = {ids[f"scene-00{n}-copy.jpg"]: ids[f"scene-00{n}.jpg"] for n in range(2)}
    code = ("import sys, json; from vitsearch.indexer.store.quarantine import quarantine_files; "
            "k = {int(a): int(b) for a, b in json.loads(sys.argv[2]).items()}; "
            "quarantine_files(sys.argv[1], k, keepers=k)")
    assert _child(code, store, json.dumps(copies), fault="quarantine_move:1") == -9
    (photos / "scene-000.jpg").unlink()  # the keeper of the first copy is gone meanwhile
    with open(photos / "scene-001.jpg", "ab") as f:
        f.write(b"edited")  # and the other keeper changed
    notes = settle_quarantine(store)
    assert "0 files moved, 2 left in place" in notes[0]
    assert (photos / "scene-000-copy.jpg").exists() and (photos / "scene-001-copy.jpg").exists()
    assert _status(store)["scene-000-copy.jpg"] == "ok"
    assert_consistent(store)


def test_undo_follows_a_store_that_moved_or_is_reached_through_a_link(tmp_path):
    photos, store = tmp_path / "photos", tmp_path / "store"
    ids = _library(photos, store, 3)
    before = _digests(photos)
    quarantine_files(store, [ids["scene-001.jpg"]])
    moved = tmp_path / "elsewhere" / "store"
    moved.parent.mkdir()
    store.rename(moved)
    link = tmp_path / "link"
    link.symlink_to(moved)
    report = undo_quarantine(link)
    assert not report.skipped and _digests(photos) == before


def test_an_apply_whose_moves_all_fail_leaves_no_manifest(split, monkeypatch):
    photos, store = split
    ids = _library(photos, store, 2)
    real_unlink = os.unlink

    def refuse_originals(path, *args, **kwargs):  # an immutable original (chattr +i) across file systems
        if str(path).startswith(str(photos)):
            raise PermissionError(1, "Operation not permitted", str(path))
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", refuse_originals)
    report = quarantine_files(store, [ids["scene-001.jpg"]])
    monkeypatch.undo()
    assert not report.moved and "could not remove the original" in report.skipped[0][1]
    assert report.manifest is None and not list((store / ".quarantine").rglob("*.json"))
    assert not [p for p in (store / ".quarantine").rglob("*") if p.is_file()], "our copy went, the original stays"
    assert (photos / "scene-001.jpg").exists() and _status(store)["scene-001.jpg"] == "ok"


def test_a_manifest_with_nothing_of_ours_is_never_rewritten(tmp_path):
    photos, store = tmp_path / "photos", tmp_path / "store"
    _library(photos, store, 1)
    secret = tmp_path / "secret.txt"
    secret.write_text("x")
    dropped = _forged(store / ".quarantine", str(photos / "nope.jpg"), str(secret), 1)
    text = dropped.read_text()
    undo_quarantine(store, dropped)
    assert dropped.read_text() == text and settle_quarantine(store) == []


def test_non_utf8_names_are_planned_moved_and_restored(tmp_path):
    photos, store = tmp_path / "photos", tmp_path / "store"
    photos.mkdir()
    data = scene_bytes(3)
    for name in (b"copy-\xff.jpg", b"\xfe-original.jpg"):
        with open(os.path.join(os.fsencode(photos), name), "wb") as f:
            f.write(data)
    build_index([photos], store, encoder=FakeEncoder())
    before = {p: hashlib.sha256(open(os.path.join(os.fsencode(photos), p), "rb").read()).hexdigest()
              for p in os.listdir(os.fsencode(photos))}
    listed = run_cli("dupes", "--store", store, "--json")
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 1, listed.stderr
    applied = run_cli("dupes", "--store", store, "--resolve", "shortest-path", "--apply")
    assert applied.returncode == 0 and "moved 1 files" in applied.stderr, applied.stderr
    assert len(os.listdir(os.fsencode(photos))) == 1
    assert run_cli("dupes", "--store", store, "--undo").returncode == 0
    after = {p: hashlib.sha256(open(os.path.join(os.fsencode(photos), p), "rb").read()).hexdigest()
             for p in os.listdir(os.fsencode(photos))}
    assert after == before

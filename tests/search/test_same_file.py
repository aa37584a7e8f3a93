"""A file reached through several paths is one file (a symlink and its target, hard links): never
a duplicate of itself, never moved while a link leads to it; and folders that decide a cleanup
(--protect, prefer:, avoid:, --against) are compared as real paths and must exist."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import FakeEncoder, run_cli, scene_bytes
from vitsearch.indexer import build_index
from vitsearch.indexer.errors import ConfigError
from vitsearch.indexer.store.quarantine import quarantine_files
from vitsearch.indexer.store.store import Store
from vitsearch.search import ImageIndex
from vitsearch.search.dupes import find_duplicates
from vitsearch.search.resolve import RESOLVE_TIERS, parse_rules, plan_resolution


def _index(root: Path, store: Path) -> ImageIndex:
    build_index([root], store, encoder=FakeEncoder())
    return ImageIndex.open(store, encoder=FakeEncoder())


def _plan(index, rules, **kw):
    groups = find_duplicates(index, tiers=RESOLVE_TIERS)
    return plan_resolution(index.store, groups, parse_rules(rules), **kw)


def _ids(store) -> dict[str, int]:
    return {os.path.relpath(r["path"], store.parent / "lib"): r["id"] for r in Store(store).records("id, path")}


@pytest.fixture
def linked(tmp_path):
    """album/photo_original.jpg, a symlink to it at sl/p.jpg, and an unrelated scene."""
    root = tmp_path / "lib"
    (root / "album").mkdir(parents=True)
    (root / "sl").mkdir()
    (root / "album" / "photo_original.jpg").write_bytes(scene_bytes(1))
    (root / "sl" / "p.jpg").symlink_to("../album/photo_original.jpg")
    (root / "album" / "other.jpg").write_bytes(scene_bytes(2))
    return root, tmp_path / "store"


def test_a_link_and_its_target_are_not_duplicates(linked):
    root, store = linked
    index = _index(root, store)
    assert len(index) == 3, "both paths are indexed and searchable"
    assert find_duplicates(index, tiers=RESOLVE_TIERS) == []
    result = run_cli("dupes", "--store", store, "--resolve", "shortest-path", "--apply")
    assert result.returncode == 0, result.stderr
    assert (root / "album" / "photo_original.jpg").is_file() and (root / "sl" / "p.jpg").resolve().is_file()


def test_a_linked_file_is_kept_and_a_real_copy_moves(linked):
    root, store = linked
    (root / "copies").mkdir()
    (root / "copies" / "photo_original-copy.jpg").write_bytes(scene_bytes(1))
    index = _index(root, store)
    (group,) = find_duplicates(index, tiers=RESOLVE_TIERS)
    paths = {os.path.relpath(p, root) for p in group.paths}
    assert paths == {"album/photo_original.jpg", "copies/photo_original-copy.jpg"}, "one path per file"
    plan = _plan(index, "shortest-path")
    assert [os.path.relpath(m["path"], root) for p in plan for m in p.move] == ["copies/photo_original-copy.jpg"]
    assert plan[0].keeper["path"] == str(root / "album" / "photo_original.jpg")


def test_a_hard_link_is_never_moved(tmp_path):
    root = tmp_path / "lib"
    root.mkdir()
    (root / "a.jpg").write_bytes(scene_bytes(1))
    os.link(root / "a.jpg", root / "hard-linked-twin.jpg")
    (root / "z.jpg").write_bytes(scene_bytes(1))
    index = _index(root, tmp_path / "store")
    for group in find_duplicates(index, tiers=RESOLVE_TIERS):
        assert not {"a.jpg", "hard-linked-twin.jpg"} <= {Path(p).name for p in group.paths}
    plan = _plan(index, "shortest-path")
    moved = {Path(m["path"]).name for p in plan for m in p.move}
    assert moved <= {"z.jpg"}


def test_the_quarantine_never_moves_a_link_or_the_keepers_own_file(linked):
    root, store = linked
    _index(root, store)
    ids = _ids(store)
    link, target = ids["sl/p.jpg"], ids["album/photo_original.jpg"]
    report = quarantine_files(store, [link, target], keepers={link: target, target: link})
    assert not report.moved
    assert {why for _, why in report.skipped} == {
        "a symbolic link: moving it would free nothing",
        f"it is the same file as its keeper {root / 'sl' / 'p.jpg'} (a link); nothing moved"}
    assert (root / "album" / "photo_original.jpg").is_file()


def test_protect_means_the_folder_whatever_its_spelling(tmp_path, monkeypatch):
    root = tmp_path / "lib"
    (root / "best").mkdir(parents=True)
    (root / "best" / "keep-me.jpg").write_bytes(scene_bytes(1))
    (root / "x.jpg").write_bytes(scene_bytes(1))
    (tmp_path / "lnk").symlink_to(root)
    index = _index(root, tmp_path / "store")
    plan = _plan(index, "shortest-path", protect=[str(tmp_path / "lnk" / "best")])
    assert [Path(m["path"]).name for p in plan for m in p.move] == ["x.jpg"], "the protected copy is kept"
    with pytest.raises(ConfigError, match="no such file or folder"):
        _plan(index, "shortest-path", protect=[str(tmp_path / "nowhere")])
    with pytest.raises(ConfigError, match="needs a folder"):
        _plan(index, "shortest-path", protect=[""])
    with pytest.raises(ConfigError, match="no such file or folder"):
        _plan(index, f"prefer:{tmp_path / 'nowhere'}")
    monkeypatch.chdir(tmp_path)
    plan = _plan(index, "prefer:lnk/best,shortest-path")
    assert plan[0].keeper["path"] == str(root / "best" / "keep-me.jpg")
    result = run_cli("dupes", "--store", tmp_path / "store", "--resolve", "shortest-path", "--protect", "")
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_a_plan_leaves_a_group_alone_when_its_keeper_is_gone(tmp_path):
    root = tmp_path / "lib"
    root.mkdir()
    (root / "k.jpg").write_bytes(scene_bytes(1))
    (root / "copy-longer-name.jpg").write_bytes(scene_bytes(1))
    index = _index(root, tmp_path / "store")
    (root / "k.jpg").unlink()
    plan = _plan(index, "shortest-path")
    assert list(plan) == [] and plan.skipped and "keeper is gone" in plan.skipped[0][1]
    result = run_cli("dupes", "--store", tmp_path / "store", "--resolve", "shortest-path", "--apply")
    assert result.returncode == 0 and "left alone" in result.stderr
    assert (root / "copy-longer-name.jpg").exists()


def test_the_keepers_own_member_has_no_tier_in_json(tmp_path):
    root = tmp_path / "lib"
    root.mkdir()
    (root / "k.jpg").write_bytes(scene_bytes(1))
    (root / "copy.jpg").write_bytes(scene_bytes(1))
    _index(root, tmp_path / "store")
    listed = run_cli("dupes", "--store", tmp_path / "store", "--json")
    (group,) = [json.loads(line) for line in listed.stdout.splitlines()]
    tiers = {m["path"].rsplit("/", 1)[1]: (m["keeper"], m["tier"]) for m in group["members"]}
    keeper = Path(group["paths"][group["ids"].index(group["keeper"])]).name
    assert tiers[keeper] == (True, None)
    assert [t for k, t in tiers.values() if not k] == ["identical"]

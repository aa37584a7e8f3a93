"""Resolution rules, protected folders, bursts, --against and calibration on real stores (the fake
encoder: what matters here is the bookkeeping, not the model)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import REPO, FakeEncoder, run_cli, scene_bytes
from vitsearch.indexer import build_index
from vitsearch.indexer.errors import ConfigError
from vitsearch.indexer.store.decisions import record_keeper
from vitsearch.indexer.store.quarantine import quarantine_plan
from vitsearch.search import ImageIndex
from vitsearch.search.calibrate import fit_near_threshold, sample_pairs
from vitsearch.search.dupes import find_duplicates, thresholds
from vitsearch.search.resolve import RESOLVE_TIERS, parse_rules, plan_cleanup, plan_resolution
from vitsearch.ui.samples import make_scene


def _jpeg(image: Image.Image, path: Path, *, camera: str | None = None, when: str | None = None, quality=90):
    exif = Image.Exif()
    if camera:
        exif[0x0110] = camera
    if when:
        exif[0x0132] = when
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=quality, exif=exif.tobytes())


@pytest.fixture
def library(tmp_path):
    """scene 1 three ways (small, large, and an older exact copy elsewhere), scene 2 twice, a burst
    of scene 3 (same camera, 2 s apart), and unrelated scenes."""
    root = tmp_path / "lib"
    small = make_scene(1, (320, 240))
    _jpeg(small, root / "a" / "one.jpg", camera="Cam A", when="2020:01:01 10:00:00")
    _jpeg(small.resize((640, 480)), root / "b" / "deeper" / "one-large.jpg")
    (root / "new").mkdir(parents=True)
    (root / "new" / "one-copy.jpg").write_bytes((root / "a" / "one.jpg").read_bytes())
    two = make_scene(2, (320, 240))
    _jpeg(two, root / "a" / "two.jpg", quality=95)
    _jpeg(two, root / "a" / "two-small-file.jpg", quality=50)
    three = make_scene(3, (320, 240))
    _jpeg(three, root / "burst" / "IMG_0001.jpg", camera="Burst Cam", when="2020:02:02 12:00:00")
    _jpeg(three.rotate(1), root / "burst" / "IMG_0002.jpg", camera="Burst Cam", when="2020:02:02 12:00:02")
    for seed in (10, 11, 12):
        (root / "others" / f"s{seed}.jpg").parent.mkdir(parents=True, exist_ok=True)
        (root / "others" / f"s{seed}.jpg").write_bytes(scene_bytes(seed))
    store = tmp_path / "store"
    build_index([root], store, encoder=FakeEncoder())
    return root, ImageIndex.open(store, encoder=FakeEncoder())


def _plans(index, rules, **kw):
    groups = find_duplicates(index, near=0.97, similar=0.9, tiers=RESOLVE_TIERS + ("burst",))
    return {Path(p.keeper["path"]).name: p for p in plan_resolution(index.store, groups, parse_rules(rules), **kw)}


def test_rules_apply_in_order_and_ties_fall_to_the_next(library):
    root, index = library
    plans = _plans(index, "largest-resolution")
    assert {"one-large.jpg", "two.jpg"} <= set(plans)
    assert plans["one-large.jpg"].rule == "largest-resolution"
    assert plans["two.jpg"].rule in ("tie: the suggested keeper", "largest-file")
    plans = _plans(index, "smallest-resolution,has-exif,shortest-path")
    one = next(p for p in plans.values() if "one" in p.keeper["path"])
    assert Path(one.keeper["path"]).name == "one.jpg" and one.rule == "shortest-path", \
        "two small copies tie on size and EXIF: the shorter path wins"
    plans = _plans(index, f"prefer:{root / 'new'},largest-resolution")
    assert "one-copy.jpg" in plans and plans["one-copy.jpg"].rule.startswith("prefer:")
    plans = _plans(index, "largest-file")
    assert [Path(m["path"]).name for m in plans["two.jpg"].move] == ["two-small-file.jpg"]


def test_protected_copies_are_kept_and_never_moved(library):
    root, index = library
    plans = _plans(index, "largest-resolution", protect=[str(root / "a")])
    moved = {Path(m["path"]).name for p in plans.values() for m in p.move}
    assert "one.jpg" in plans, "the protected copy is the keeper even when another is larger"
    assert not moved & {"one.jpg", "two.jpg", "two-small-file.jpg"}
    assert {"one-large.jpg", "one-copy.jpg"} <= moved


def test_a_burst_is_its_own_tier_and_never_resolved(library):
    _, index = library
    groups = find_duplicates(index, near=0.97, similar=0.9)
    burst = next(g for g in groups if any("IMG_0001" in p for p in g.paths))
    assert burst.tier == "burst"
    assert [m.tier for m in burst.members if not m.keeper] == ["burst"]
    assert "2 s apart" in next(m.reason for m in burst.members if not m.keeper)
    moved = {m["path"] for p in _plans(index, "largest-file").values() for m in p.move}
    assert not any("IMG_000" in p for p in moved)


def test_against_keeps_groups_crossing_the_folder(library):
    root, index = library
    groups = find_duplicates(index, near=0.97, similar=0.9, against=root / "new")
    assert len(groups) == 1 and any(p.endswith("one-copy.jpg") for p in groups[0].paths)
    assert find_duplicates(index, near=0.97, similar=0.9, against=root / "others") == []


def test_plan_cleanup_is_find_then_plan_with_the_users_keepers(library):
    """The one plan verb of the CLI's --resolve and the page's cleanup: the groups of the tiers,
    planned by the rules, a recorded keeper honoured; the apply verb moves exactly that plan."""
    root, index = library
    one_copy = next(r["id"] for r in index.store.records("id, path") if r["path"].endswith("one-copy.jpg"))
    record_keeper(index.store.dir, one_copy)
    index.refresh()
    plan = plan_cleanup(index, "largest-resolution", near=0.97, similar=0.9, protect=[str(root / "b")])
    groups = find_duplicates(index, near=0.97, similar=0.9, tiers=RESOLVE_TIERS)
    by_hand = plan_resolution(index.store, groups, parse_rules("largest-resolution"), protect=[str(root / "b")],
                              keepers={one_copy})
    assert plan.groups == by_hand.groups and plan.skipped == by_hand.skipped and plan.groups
    assert plan.unsigned == groups[0].unsigned
    assert any(p.keeper["id"] == one_copy and p.rule == "keep (your decision)" for p in plan)
    assert plan_cleanup(index, ["largest-resolution"], tiers=(), near=0.97, similar=0.9).groups == \
        plan_resolution(index.store, groups, ["largest-resolution"], keepers={one_copy}).groups, \
        "no tiers means the resolve tiers"
    assert plan_cleanup(index, "largest-resolution", near=0.97, similar=0.9, against=root / "others").groups == []

    report = quarantine_plan(index.store.dir, plan.keepers())
    assert {m.id for m in report.moved} == set(plan.keepers())
    assert not any(Path(m["path"]).exists() for p in plan for m in p.move)


def test_unknown_rules_are_refused_with_the_list():
    with pytest.raises(ConfigError, match="largest-resolution"):
        parse_rules("biggest")
    with pytest.raises(ConfigError, match="needs a folder"):
        parse_rules("prefer:")


def test_calibration_labels_set_the_store_threshold(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in range(8):
        image = make_scene(seed, (320, 240))
        image.save(folder / f"s{seed}.jpg", quality=92)
        buffer = io.BytesIO()
        image.resize((200, 150)).save(buffer, "JPEG", quality=60)
        (folder / f"s{seed}-small.jpg").write_bytes(buffer.getvalue())
    store = tmp_path / "store"
    assert run_cli("index", folder, "--store", store, "--weights", "random").returncode == 0
    index = ImageIndex.open(store)
    pairs = sample_pairs(index)  # the command samples the same pairs (a fixed seed)
    answers = ["y" if Path(p.path_a).stem.split("-")[0] == Path(p.path_b).stem.split("-")[0] else "n"
               for p in pairs]
    assert "y" in answers and "n" in answers, "the sample needs both kinds of pair"
    child = subprocess.run([sys.executable, "-m", "vitsearch.ui.cli", "dupes", "--store", str(store), "--calibrate"],
                           cwd=REPO, input="\n".join(answers) + "\n", capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr
    expected = fit_near_threshold([(p.score, a == "y") for p, a in zip(pairs, answers, strict=True)])
    near, _ = thresholds(ImageIndex.open(store).store)
    assert near == pytest.approx(expected) and f"{expected:.4f}" in child.stderr
    assert max(p.score for p, a in zip(pairs, answers, strict=True) if a == "n") < near
    listed = run_cli("dupes", "--store", store, "--json", "--tier", "near")
    for line in listed.stdout.splitlines():  # later runs use it: every near member clears it
        group = json.loads(line)
        assert all(m["score"] >= near - 1e-6 or m["transform"] or m["keeper"] or "layout" in m["reason"]
                   or "another member" in m["reason"] for m in group["members"])


def test_the_chosen_keepers_raw_partner_stays_whichever_copy_the_rules_choose(tmp_path):
    """A camera's RAW+JPEG of one shot, and a backup copy of both: the rules may keep either JPEG,
    and the RAW beside the kept JPEG stays with it (it is the same shot, not a copy)."""
    from tests.formats import dng_bytes

    image = make_scene(4, (640, 480))
    for folder in ("DCIM", "backup"):
        (tmp_path / "lib" / folder).mkdir(parents=True)
        _jpeg(image, tmp_path / "lib" / folder / "IMG_1.JPG")
        (tmp_path / "lib" / folder / "IMG_1.DNG").write_bytes(dng_bytes(image))
    build_index([tmp_path / "lib"], tmp_path / "store", encoder=FakeEncoder())
    index = ImageIndex.open(tmp_path / "store", encoder=FakeEncoder())
    for rules in ("smallest-file", "largest-file", "prefer:" + str(tmp_path / "lib" / "backup") + ",smallest-file"):
        groups = find_duplicates(index, near=0.9, similar=0.85, tiers=RESOLVE_TIERS)
        plan = plan_resolution(index.store, groups, parse_rules(rules))
        moved = {m["path"] for p in plan for m in p.move}
        assert moved, rules
        for group in plan:
            kept = Path(group.keeper["path"])
            partner = kept.with_suffix(".DNG" if kept.suffix == ".JPG" else ".JPG")
            assert str(partner) not in moved, (rules, kept, moved)
        assert any(p.endswith(".DNG") for p in {str(p) for p in (tmp_path / "lib").rglob("*")} - moved), rules

"""A whole-library cleanup on real photos with the real architecture: planted copies of each kind
land in their tier (rotations and mirrors named), rules plan the cleanup, --apply quarantines
exactly the plan, --undo restores every byte, and the store follows both ways."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import run_cli
from tests.indexer.test_sync import assert_consistent
from tests.planted import EXPECTED, ORIGINALS, plant
from vitsearch.indexer import build_index
from vitsearch.indexer.store.decisions import record_not_duplicates
from vitsearch.indexer.store.store import Store
from vitsearch.search import ImageIndex
from vitsearch.search.dupes import find_duplicates
from vitsearch.search.resolve import RESOLVE_TIERS, parse_rules, plan_resolution

# Random weights squeeze scores together (see test_dupes): thresholds on that scale.
NEAR, SIMILAR = 0.99, 0.9
FLAGS = ("--near", str(NEAR), "--similar", str(SIMILAR))


@pytest.fixture(scope="module")
def library(tmp_path_factory, random_encoder):
    root = tmp_path_factory.mktemp("cleanup")
    plant(root / "photos")
    (root / "reference").mkdir()
    shutil.copy(root / "photos" / "chelsea.jpg", root / "reference" / "chelsea-ref.jpg")
    build_index([root / "photos", root / "reference"], root / "store", encoder=random_encoder)
    return root


def _stored(store) -> dict[str, tuple]:
    with Store(store).connect() as con:
        rows = con.execute("SELECT path, id, status, embedding FROM images ORDER BY path").fetchall()
    return {p: (i, s, np.asarray(e)) for p, i, s, e in rows}


def _digests(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_planted_copies_land_in_their_tiers_with_transforms(library, random_encoder):
    index = ImageIndex.open(library / "store", encoder=random_encoder)
    groups = find_duplicates(index, near=NEAR, similar=SIMILAR, tiers=RESOLVE_TIERS)
    assert not any("/others/" in p for g in groups for p in g.paths), "no distractor joins a group"
    for name in ORIGINALS:
        stem = Path(name).stem
        group = next(g for g in groups if any(p.endswith(f"/photos/{stem}.jpg") for p in g.paths))
        members = {Path(m.path).stem: m for m in group.members}
        assert members[stem].keeper, "the original is the suggested keeper"
        for kind, (tier, transform) in EXPECTED.items():
            member = members[f"{stem}-{kind}"]
            assert (member.tier, member.transform) == (tier, transform), (kind, member)
            assert member.reason
        assert sum(len([p for p in g.paths if Path(p).stem.startswith(stem)]) > 0 for g in groups) == 1


def test_json_members_carry_the_documented_keys(library):
    result = run_cli("dupes", "--store", library / "store", "--json", *FLAGS)
    assert result.returncode == 0, result.stderr
    groups = [json.loads(line) for line in result.stdout.splitlines()]
    assert groups
    for group in groups:
        assert {"tier", "ids", "paths", "scores", "keeper", "members", "reason"} <= set(group)
        for member in group["members"]:
            assert {"id", "path", "score", "tier", "transform"} <= set(member)
    transforms = {m["transform"] for g in groups for m in g["members"]}
    assert {"rotate-270", "mirror"} <= transforms


def test_resolve_apply_undo_round_trip(library):
    store, photos, reference = library / "store", library / "photos", library / "reference"
    before_rows, before_files = _stored(store), {**_digests(photos), **_digests(reference)}
    plan_run = run_cli("dupes", "--store", store, *FLAGS, "--resolve", "largest-resolution",
                       "--protect", reference, "--json")
    assert plan_run.returncode == 0, plan_run.stderr
    plans = [json.loads(line) for line in plan_run.stdout.splitlines()]
    assert {**_digests(photos), **_digests(reference)} == before_files, "a dry run moves nothing"
    keepers = {Path(p["keeper"]["path"]).name for p in plans}
    assert keepers == {"astronaut.jpg", "chelsea-ref.jpg"}, "the original, or the protected copy"
    moved = {m["path"] for p in plans for m in p["move"]}
    assert str(photos / "chelsea.jpg") in moved and not any(m.startswith(str(reference)) for m in moved)
    assert all({"tier", "keeper", "move", "rule"} <= set(p) for p in plans)
    assert len(moved) == 2 * len(EXPECTED) + 1

    applied = run_cli("dupes", "--store", store, *FLAGS, "--resolve", "largest-resolution",
                      "--protect", reference, "--apply")
    assert applied.returncode == 0, applied.stderr
    assert not any(Path(p).exists() for p in moved)
    quarantined = {Path(p).name for p in _digests(store / ".quarantine") if not p.endswith(".json")}
    assert quarantined == {Path(p).name for p in moved}, "exactly the planned files moved"
    rows = _stored(store)
    assert {p for p, (_, status, _) in rows.items() if status == "quarantined"} == moved
    assert len(ImageIndex.open(store)) == len(before_rows) - len(moved)
    assert_consistent(store)
    assert run_cli("index", photos, reference, "--store", store).returncode == 0  # a sync keeps them aside
    assert {p for p, (_, s, _) in _stored(store).items() if s == "quarantined"} == moved

    undone = run_cli("dupes", "--store", store, "--undo")
    assert undone.returncode == 0, undone.stderr
    assert {**_digests(photos), **_digests(reference)} == before_files, "every file back, byte for byte"
    assert_consistent(store)
    report = run_cli("index", photos, reference, "--store", store, "--json")
    summary = json.loads(report.stdout.strip().splitlines()[-1])
    assert summary["added"] == summary["updated"] == summary["removed"] == 0
    after = _stored(store)
    assert after.keys() == before_rows.keys()
    for path, (row_id, status, embedding) in before_rows.items():
        assert after[path][:2] == (row_id, status) and np.array_equal(after[path][2], embedding)


def test_a_not_duplicates_pair_stays_out_of_each_others_plan(tmp_path, random_encoder):
    photos = tmp_path / "photos"
    plant(photos)
    store = tmp_path / "store"
    build_index([photos], store, encoder=random_encoder)
    ids = {Path(r["path"]).stem: r["id"] for r in Store(store).records("id, path")}
    record_not_duplicates(store, [ids["astronaut"], ids["astronaut-half"]])
    index = ImageIndex.open(store, encoder=random_encoder)
    groups = find_duplicates(index, near=NEAR, similar=SIMILAR, tiers=RESOLVE_TIERS)
    for plan in plan_resolution(index.store, groups, parse_rules("largest-resolution")):
        involved = {plan.keeper["id"], *(m["id"] for m in plan.move)}
        assert not {ids["astronaut"], ids["astronaut-half"]} <= involved

"""Video duplicates through `vitsearch dupes`: re-encodes at a smaller size and lower bitrate, and
trims, are `near` their original and a byte copy `identical`; different clips never group (a
shared black intro included); a photo never joins a video group; and a cleanup by the video rules
applies and undoes byte for byte. Generated clips, the fake encoder (its colour layouts separate
these scenes) and the default thresholds."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import FakeEncoder, run_cli
from tests.indexer.test_sync import assert_consistent
from tests.videos import frame_at, scene_shots, write_clip
from vitsearch.indexer import build_index
from vitsearch.indexer.store.store import Store
from vitsearch.search import ImageIndex
from vitsearch.search.dupes import find_duplicates
from vitsearch.search.resolve import plan_cleanup
from vitsearch.search.signature_edges import signature_edges
from vitsearch.search.video_dupes import _in_order

SHOT_SECONDS, SHOTS = 3.0, 4  # 12 s clips of four shots
ORIGINALS, TRIMMED, INTROS = 10, 5, 5
TRIM = (0.2 * SHOT_SECONDS * SHOTS, 0.8 * SHOT_SECONDS * SHOTS)  # the middle 60%
REASON = re.compile(r"(\d+) of (\d+) frames matched, duration (\d\.\d\d)")


def _shots(seed: int):
    return scene_shots([seed + k for k in range(SHOTS)], seconds=SHOT_SECONDS)


def _reencode(path: Path, shots) -> Path:
    """A smaller, lower-bitrate re-encode with keyframes of its own (its frames are sampled at
    other instants than its original's)."""
    return write_clip(path, shots, size=(160, 120), crf=32, gop=24)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Each file's footage: clip i (an original, its re-encode, its trim, a byte copy of clip 1)
    or a name of its own (clips with a black intro, a one-shot clip)."""
    root = tmp_path_factory.mktemp("video-dupes")
    folder = root / "library"
    footage: dict[str, object] = {}
    for i in range(ORIGINALS):
        shots = _shots(100 + 10 * i)
        footage[str(write_clip(folder / "originals" / f"clip{i}.mp4", shots))] = i
        footage[str(_reencode(folder / "reencoded" / f"clip{i}-small.mp4", shots))] = i
        if i < TRIMMED:
            footage[str(write_clip(folder / "trims" / f"clip{i}-trim.mp4", shots, start=TRIM[0], end=TRIM[1]))] = i
    for i in range(INTROS):
        shots = scene_shots([None], seconds=2.0) + scene_shots([500 + 10 * i + k for k in range(3)], SHOT_SECONDS)
        footage[str(write_clip(folder / "intros" / f"intro{i}.mp4", shots))] = f"intro{i}"
    copy = folder / "copies" / "clip1-copy.mp4"
    copy.parent.mkdir()
    shutil.copy(folder / "originals" / "clip1.mp4", copy)
    footage[str(copy)] = 1
    # A one-shot clip samples one frame: its embedding is that frame's, and an exported still of it
    # (with a smaller copy) is a photo as close to it as a photo gets.
    oneshot = write_clip(folder / "short" / "oneshot.mp4", scene_shots([900], seconds=2.0))
    footage[str(oneshot)] = "oneshot"
    (folder / "photos").mkdir()
    still = frame_at(oneshot, 0.0)
    still.save(folder / "photos" / "still.jpg", quality=95)
    still.resize((still.width // 2, still.height // 2), Image.Resampling.LANCZOS).save(
        folder / "photos" / "still-small.jpg", quality=80)
    build_index([folder], root / "store", encoder=FakeEncoder())
    return root / "store", footage


def _precision_recall(groups, footage) -> tuple[float, float]:
    """Over pairs of videos: those put in one group, against those of one footage."""
    found = set().union(*(_pairs(g["paths"]) for g in groups if g["kind"] == "video"))
    truth = {pair for pair in _pairs(footage) if len({footage[p] for p in pair}) == 1}
    precision, recall = len(found & truth) / max(len(found), 1), len(found & truth) / len(truth)
    print(f"video pairs: {len(truth)} of one footage, {len(found)} grouped; precision {precision:.3f}, "
          f"recall {recall:.3f}")
    return precision, recall


@pytest.fixture(scope="module")
def listed(library):
    """`vitsearch dupes --json` on the library, through the real CLI."""
    store, _ = library
    result = run_cli("dupes", "--store", store, "--json")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def _pairs(paths) -> set[frozenset]:
    return {frozenset(p) for p in combinations(paths, 2)}


def test_reencodes_and_trims_group_with_their_original_and_nothing_else(library, listed):
    _, footage = library
    videos = [g for g in listed if g["kind"] == "video"]
    assert _precision_recall(listed, footage) == (1.0, 1.0)
    assert {g["tier"] for g in videos} == {"near"}
    for group in videos:
        keeper = next(m for m in group["members"] if m["keeper"])
        assert "/originals/" in keeper["path"] or "/copies/" in keeper["path"], "the longest, largest is kept"
        for member in group["members"]:
            if member["keeper"] or member["tier"] == "identical":
                continue
            matched, frames, ratio = REASON.search(member["reason"]).groups()
            assert member["tier"] == "near"
            assert int(matched) >= 0.8 * int(frames) or "another member" in member["reason"], member
            expected = 0.6 if "/trims/" in member["path"] else 1.0
            assert float(ratio) == pytest.approx(expected, abs=0.02), member


@pytest.mark.slow
def test_the_real_architecture_groups_the_same_footage(library, random_encoder, tmp_path):
    """The same library through the ViT with random weights, at the thresholds of its scale (see
    test_dupes): the near groups are exactly the clips of one footage."""
    store, footage = library
    build_index([store.parent / "library"], tmp_path / "store", encoder=random_encoder)
    index = ImageIndex.open(tmp_path / "store", encoder=random_encoder)
    groups = find_duplicates(index, near=0.99, similar=0.9, tiers=("identical", "near"))
    assert _precision_recall([g.to_record() for g in groups], footage) == (1.0, 1.0)


def test_a_byte_copy_is_identical(library, listed):
    store, _ = library
    group = next(g for g in listed if any(p.endswith("clip1-copy.mp4") for p in g["paths"]))
    copies = [m for m in group["members"] if Path(m["path"]).name in ("clip1.mp4", "clip1-copy.mp4")]
    assert [m["tier"] for m in copies if not m["keeper"]] == ["identical"]
    assert "same bytes" in next(m["reason"] for m in copies if not m["keeper"])
    result = run_cli("dupes", "--store", store, "--json", "--tier", "identical")
    assert result.returncode == 0, result.stderr
    only = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(g["tier"], sorted(Path(p).name for p in g["paths"])) for g in only] == \
        [("identical", ["clip1-copy.mp4", "clip1.mp4"])]


def test_a_photo_never_joins_a_video_group(library, listed):
    store, _ = library
    kinds = {r["path"]: r["kind"] for r in Store(store).records("path, kind")}
    for group in listed:
        assert {kinds[p] for p in group["paths"]} == {group["kind"]}, group["paths"]
    stills = [g for g in listed if g["kind"] == "image"]
    assert [sorted(Path(p).name for p in g["paths"]) for g in stills] == [["still-small.jpg", "still.jpg"]]
    # It bites: the still is as close to its one-shot clip as to its own smaller copy.
    rows = {Path(r["path"]).name: np.asarray(r["embedding"]) for r in Store(store).records("path, embedding")}
    assert float(rows["still.jpg"] @ rows["oneshot.mp4"]) >= 0.95


def test_videos_have_no_signatures_to_share(library):
    """A video has no pixel hash: never counted as a photo awaiting one, never 'the same pixels' as
    another row without one (a NULL read back masked once chained every video together)."""
    store, _ = library
    edges = signature_edges(Store(store))
    assert (edges.signed, edges.unsigned) == (2, 0)
    assert not any(len(a) for a in (*edges.identical, *edges.same_pixels))


def test_the_same_shots_in_another_order_are_similar_not_near(tmp_path):
    """Matching is in time order: a re-edit of the same shots matches frame by frame, not as footage."""
    seeds = [800, 801, 802, 803]
    write_clip(tmp_path / "clips" / "cut.mp4", scene_shots(seeds, seconds=SHOT_SECONDS))
    write_clip(tmp_path / "clips" / "recut.mp4", scene_shots(seeds[::-1], seconds=SHOT_SECONDS))
    build_index([tmp_path / "clips"], tmp_path / "store", encoder=FakeEncoder())
    index = ImageIndex.open(tmp_path / "store", encoder=FakeEncoder())
    [group] = find_duplicates(index)
    other = next(m for m in group.members if not m.keeper)
    assert (group.kind, other.tier) == ("video", "similar") and "frames alike" in other.reason, other
    assert find_duplicates(index, tiers=("identical", "near")) == []


def test_in_order_matching_agrees_with_brute_force():
    def brute(matches, row=0, low=0) -> int:
        if row == len(matches):
            return 0
        taken = [1 + brute(matches, row + 1, j) for j in range(low, matches.shape[1]) if matches[row, j]]
        return max([brute(matches, row + 1, low), *taken])

    rng = np.random.default_rng(0)
    for _ in range(300):
        matches = rng.random((int(rng.integers(1, 6)), int(rng.integers(1, 6)))) < 0.4
        assert _in_order(matches) == brute(matches), matches


@pytest.fixture
def cleanup_library(tmp_path):
    """One clip three ways: the original, a smaller re-encode (the lowest bitrate), and a trim
    encoded at a higher quality (the highest bitrate, the shortest)."""
    folder = tmp_path / "library"
    shots = _shots(700)
    write_clip(folder / "clip.mp4", shots, crf=23)
    _reencode(folder / "clip-small.mp4", shots)
    write_clip(folder / "clip-trim.mp4", shots, crf=12, start=TRIM[0], end=TRIM[1])
    build_index([folder], tmp_path / "store", encoder=FakeEncoder())
    return folder, tmp_path / "store"


def _digests(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_video_rules_choose_the_keeper_and_apply_undoes_byte_for_byte(cleanup_library):
    folder, store = cleanup_library
    index = ImageIndex.open(store, encoder=FakeEncoder())
    facts = {Path(r["path"]).name: r for r in index.store.records("path, duration, bitrate, width")}
    assert facts["clip-trim.mp4"]["bitrate"] > facts["clip.mp4"]["bitrate"] > facts["clip-small.mp4"]["bitrate"]
    for rules, keeper in (("longest", "clip.mp4"), ("highest-bitrate", "clip-trim.mp4"),
                          ("longest,highest-bitrate", "clip.mp4"), ("largest-resolution", "clip.mp4")):
        [plan] = plan_cleanup(index, rules)
        assert Path(plan.keeper["path"]).name == keeper, (rules, plan)
        assert {Path(m["path"]).name for m in plan.move} == set(facts) - {keeper}
    assert plan_cleanup(index, "longest,highest-bitrate")[0].rule == "highest-bitrate"

    before, rows = _digests(folder), {r["path"]: r["status"] for r in Store(store).records("path, status", "true")}
    applied = run_cli("dupes", "--store", store, "--resolve", "longest", "--apply")
    assert applied.returncode == 0, applied.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["clip.mp4"]
    assert len(ImageIndex.open(store)) == 1
    assert_consistent(store)
    undone = run_cli("dupes", "--store", store, "--undo")
    assert undone.returncode == 0, undone.stderr
    assert _digests(folder) == before, "every video back, byte for byte"
    assert {r["path"]: r["status"] for r in Store(store).records("path, status", "true")} == rows
    assert_consistent(store)
    assert [len(g.ids) for g in find_duplicates(ImageIndex.open(store, encoder=FakeEncoder()))] == [3]

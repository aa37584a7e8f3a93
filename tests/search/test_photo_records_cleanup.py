"""A cleanup that honours the photographer, on a library as photo managers leave it
(tests/photo_records.py): rated and picked originals are kept over larger copies, each moved file
takes its sidecars, edits and Live Photo video along and leaves none behind, --mark xmp writes
what Lightroom, darktable and digiKam read (exiftool is the oracle), and --undo brings back the
whole tree byte for byte."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest

from tests.conftest import FakeEncoder, run_cli
from tests.photo_records import make_library
from vitsearch.indexer import build_index
from vitsearch.indexer.extensions import has_image_extension
from vitsearch.indexer.store.companions import companion_candidate, companions_of
from vitsearch.indexer.store.safe_move import file_digest
from vitsearch.indexer.store.store import Store
from vitsearch.ui.cli import main

EXIFTOOL = "/usr/bin/exiftool"


@pytest.fixture
def library(tmp_path):
    root, store = tmp_path / "photos", tmp_path / "store"
    expected = make_library(root)
    build_index([root], store, encoder=FakeEncoder())
    return root, store, expected


def _tree(root) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _orphans(root) -> list[str]:
    """Companion files in the library with no image they belong to."""
    names = os.listdir(root)
    images = [n for n in names if has_image_extension(n)]
    return [n for n in names if companion_candidate(n) and not any(n in companions_of(i, [n]) for i in images)]


def _ratings(store) -> dict:
    return {r["path"].rsplit("/", 1)[1]: r["rating"] for r in Store(store).records("path, rating", "true")}


def _dupes(store, *args, capsys) -> tuple[int, str, str]:
    code = main(["dupes", "--store", str(store), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_apply_keeps_what_was_rated_moves_companions_and_undo_restores_the_tree(library, capsys):
    root, store, expected = library
    before = _tree(root)
    code, _, err = _dupes(store, "--resolve", "largest-resolution", "--apply", capsys=capsys)
    assert code == 0, err
    assert "rating guard" in err
    left = set(os.listdir(root))
    assert expected["keep"] <= left, "every rated, picked or kept original stays"
    for name, companions in expected["move"].items():
        assert name not in left and not set(companions) & left, f"{name} left with all its companions"
    assert _orphans(root) == [], "no sidecar or edit file is left without its image"
    quarantined = {p.name for p in (store / ".quarantine").rglob("*") if p.is_file()}
    assert {c for cs in expected["move"].values() for c in cs} <= quarantined

    code, _, err = _dupes(store, "--undo", capsys=capsys)
    assert code == 0, err
    assert _tree(root) == before, "every file and sidecar is back, byte for byte"


def test_override_ratings_lets_the_rules_decide(library, capsys):
    _, store, _ = library
    code, out, _ = _dupes(store, "--resolve", "largest-resolution", "--json", capsys=capsys)
    guarded = [json.loads(line) for line in out.splitlines()]
    moved = {m["path"].rsplit("/", 1)[1] for p in guarded for m in p["move"]}
    assert "best.jpg" not in moved and "upscaled_export.jpg" in moved
    assert any(p["guard"] for p in guarded) and all("companions" in m for p in guarded for m in p["move"])
    code, out, _ = _dupes(store, "--resolve", "largest-resolution", "--override-ratings", "--json", capsys=capsys)
    moved = {m["path"].rsplit("/", 1)[1] for line in out.splitlines() for m in json.loads(line)["move"]}
    assert {"best.jpg", "pick.jpg"} <= moved, "without the guard the larger copies win"


def test_new_rules_choose_by_the_photographers_records(library, capsys):
    _, store, _ = library
    for rule in ("highest-rating", "picked", "not-rejected", "most-keywords"):
        code, out, _ = _dupes(store, "--resolve", f"{rule},smallest-resolution", "--override-ratings", "--json",
                              capsys=capsys)
        plans = {p["keeper"]["path"].rsplit("/", 1)[1]: p for p in map(json.loads, out.splitlines())}
        assert code == 0 and plans
        if rule == "highest-rating":
            assert "best.jpg" in plans and plans["best.jpg"]["rule"] == "highest-rating"
        if rule == "picked":
            assert "pick.jpg" in plans and plans["pick.jpg"]["rule"] == "picked"
        if rule == "not-rejected":
            assert "plain.jpg" in plans and plans["plain.jpg"]["rule"] == "not-rejected"
        if rule == "most-keywords":
            assert plans["best.jpg"]["rule"] == "most-keywords"


def test_hard_links_are_reported_and_never_planned(library, capsys):
    _, store, expected = library
    _, out, _ = _dupes(store, "--json", capsys=capsys)
    groups = [json.loads(line) for line in out.splitlines()]
    linked = [g for g in groups if g["tier"] == "hardlink"]
    assert len(linked) == 1 and {p.rsplit("/", 1)[1] for p in linked[0]["paths"]} == expected["hardlinks"]
    for tiers in ([], ["--tier", "identical"], ["--tier", "hardlink"]):
        _, out, _ = _dupes(store, "--resolve", "largest-resolution,shortest-path", *tiers, "--json", capsys=capsys)
        moved = {m["path"].rsplit("/", 1)[1] for line in out.splitlines() for m in json.loads(line)["move"]}
        assert not moved & expected["hardlinks"]


@pytest.mark.skipif(not os.path.exists(EXIFTOOL), reason="Debian's exiftool (libimage-exiftool-perl) is the oracle")
def test_mark_xmp_writes_what_photo_managers_read_and_undo_restores(library, capsys):
    root, store, expected = library
    before = _tree(root)
    code, _, err = _dupes(store, "--resolve", "largest-resolution", "--mark", "xmp", "--merge-metadata",
                          capsys=capsys)
    assert code == 0, err
    after = _tree(root)
    images = {n: h for n, h in before.items() if has_image_extension(n)}
    assert {n: after[n] for n in images} == images, "image files are never written"
    assert set(after) - set(before) <= {n + ".xmp" for n in images}, "only sidecars are created"
    read = {os.path.basename(r["SourceFile"]): r for r in json.loads(subprocess.run(
        [EXIFTOOL, "-j", "-Rating", "-Subject", str(root)], capture_output=True, text=True, check=True,
        ).stdout.replace("\n]\n[", ","))}  # one JSON list per folder
    keepers = {"upscaled_export.jpg": "best.jpg", "pick_big.jpg": "pick.jpg", "IMG_0003.HEIC": "IMG_0003_full.jpg",
               "reject.jpg": "plain.jpg"}
    for loser, keeper in keepers.items():
        sidecar = next(n for n in (f"{loser}.xmp", f"{loser.rsplit('.', 1)[0]}.xmp") if n in read)
        subjects = read[sidecar].get("Subject", [])
        subjects = subjects if isinstance(subjects, list) else [subjects]
        assert read[sidecar]["Rating"] == -1 and f"vitsearch|duplicate of|{keeper}" in subjects, sidecar
    pick_keeper = read["pick.jpg.xmp"]
    assert set(pick_keeper["Subject"]) == {"holiday", "trip"}, "the keeper gains the group's keywords"
    assert read["best.jpg.xmp"]["Rating"] == 5

    assert _ratings(store)["upscaled_export.jpg"] == -1, "the store says what the sidecars now say"
    assert _ratings(store)["pick.jpg"] is None and _ratings(store)["best.jpg"] == 5

    code, _, err = _dupes(store, "--undo", capsys=capsys)
    assert code == 0, err
    assert _tree(root) == before, "every sidecar written is restored, every one created removed"
    assert _ratings(store)["upscaled_export.jpg"] is None


def test_a_kill_between_an_image_and_its_companion_leaves_nothing_orphaned(library):
    root, store, _ = library
    before = _tree(root)
    killed = run_cli("dupes", "--store", store, "--resolve", "largest-resolution", "--apply",
                     env={"VITSEARCH_FAULT": "companion_move:1"})
    assert killed.returncode == -9, killed.stderr
    assert _orphans(root) != [] or len(_tree(root)) < len(before), "killed after an image moved"
    finished = run_cli("dupes", "--store", store, "--resolve", "largest-resolution", "--apply")
    assert finished.returncode == 0, finished.stderr
    assert "interrupted apply" in finished.stderr and _orphans(root) == []
    undone = run_cli("dupes", "--store", store, "--undo")
    assert undone.returncode == 0, undone.stderr
    while (store / ".quarantine").is_dir() and list((store / ".quarantine").glob("manifest-*.json")):
        again = run_cli("dupes", "--store", store, "--undo")
        assert again.returncode == 0, again.stderr
    assert _tree(root) == before


def test_a_kill_while_sidecars_are_marked_is_undone_byte_for_byte(library):
    root, store, _ = library
    before = _tree(root)
    killed = run_cli("dupes", "--store", store, "--resolve", "largest-resolution", "--mark", "xmp",
                     "--merge-metadata", env={"VITSEARCH_FAULT": "sidecar_install:3"})
    assert killed.returncode == -9, killed.stderr
    assert _tree(root) != before, "two sidecars were written before the kill"
    assert [p for p in root.iterdir() if p.name.endswith(".vitsearch-tmp")], "the rest lie prepared, hidden"
    undone = run_cli("dupes", "--store", store, "--undo")
    assert undone.returncode == 0, undone.stderr
    assert not [p for p in root.iterdir() if p.name.endswith(".vitsearch-tmp")], "the undo removes them"
    assert _tree(root) == before


def test_exported_rows_carry_the_records(library, tmp_path):
    pyarrow = pytest.importorskip("pyarrow.parquet")
    from vitsearch.search.export import export_parquet

    _, store, expected = library
    export_parquet(tmp_path / "out.parquet", store)
    table = pyarrow.read_table(tmp_path / "out.parquet").to_pylist()
    rows = {r["path"].rsplit("/", 1)[1]: r for r in table}
    for name, (rating, pick, keywords) in expected["records"].items():
        assert (rows[name]["rating"], rows[name]["pick"], rows[name]["keywords"] or []) == (rating, pick, keywords)


def test_a_rating_given_since_the_last_index_is_never_planned_over(library, capsys):
    """Rated in a photo manager after indexing: the plan does not decide on the old records."""
    from tests.photo_records import write_sidecar

    root, store, _ = library
    write_sidecar(root / "upscaled_export.jpg.xmp", rating=5)
    code, out, err = _dupes(store, "--resolve", "largest-resolution", "--json", capsys=capsys)
    planned = {m["path"].rsplit("/", 1)[1] for line in out.splitlines() for p in [json.loads(line)]
               for m in [p["keeper"], *p["move"]]}
    assert not {"best.jpg", "upscaled_export.jpg"} & planned and "run `vitsearch index` first" in err
    build_index([root], store, encoder=FakeEncoder())
    code, out, err = _dupes(store, "--resolve", "largest-resolution", "--json", capsys=capsys)
    plans = {json.loads(line)["keeper"]["path"].rsplit("/", 1)[1]: json.loads(line) for line in out.splitlines()}
    assert "upscaled_export.jpg" in plans and plans["upscaled_export.jpg"]["move"][0]["path"].endswith("/best.jpg")


def test_a_picked_keeper_never_takes_a_higher_rated_copy_along(tmp_path, capsys):
    """The keeper is picked (rated 1); a copy rated 5 is not picked: it stays all the same."""
    from tests.photo_records import embed_xmp, jpeg, write_sidecar

    root, store = tmp_path / "photos", tmp_path / "store"
    root.mkdir()
    (root / "a_small.jpg").write_bytes(embed_xmp(jpeg(7), pick="picked", rating=1))
    (root / "b_big.jpg").write_bytes(jpeg(7, scale=1.5))
    write_sidecar(root / "b_big.jpg.xmp", rating=5)
    (root / "c_copy.jpg").write_bytes(jpeg(7, scale=1.2))
    build_index([root], store, encoder=FakeEncoder())
    _, out, _ = _dupes(store, "--resolve", "largest-resolution", "--json", capsys=capsys)
    plans = [json.loads(line) for line in out.splitlines()]
    assert [p["keeper"]["path"].rsplit("/", 1)[1] for p in plans] == ["a_small.jpg"]
    assert [m["path"].rsplit("/", 1)[1] for m in plans[0]["move"]] == ["c_copy.jpg"], "the 5-star copy stays"


def test_an_image_that_cannot_come_back_keeps_its_companions_with_it(library, capsys):
    """Undo with the image's old place taken by a new file: its sidecar stays in the quarantine
    too, never beside a stranger whose rating it would become."""
    root, store, _ = library
    _dupes(store, "--resolve", "largest-resolution", "--apply", capsys=capsys)
    (root / "pick_big.jpg").write_bytes(b"a new file the user put here")
    code, _, err = _dupes(store, "--undo", capsys=capsys)
    assert code == 1 and "old place is taken" in err
    assert not (root / "pick_big.jpg.xmp").exists(), "the sidecar stays with its image"
    assert (root / "IMG_0003.HEIC").exists() and (root / "IMG_0003.MOV").exists(), "the others came back"
    (root / "pick_big.jpg").unlink()
    code, _, err = _dupes(store, "--undo", capsys=capsys)
    assert code == 0, err
    assert (root / "pick_big.jpg").exists() and (root / "pick_big.jpg.xmp").exists() and _orphans(root) == []


def test_an_edited_sidecar_is_kept_and_the_next_undo_moves_on(library, capsys):
    """A sidecar the user edits after marking is theirs: the undo leaves it, says so, and the
    manifest no longer stands in the way of a later undo."""
    root, store, _ = library
    _dupes(store, "--resolve", "largest-resolution", "--mark", "xmp", capsys=capsys)
    edited = root / "upscaled_export.jpg.xmp"
    edited.write_bytes(edited.read_bytes().replace(b"vitsearch|duplicate of|best.jpg", b"mine now"))
    code, _, err = _dupes(store, "--undo", capsys=capsys)
    assert code == 1 and "changed since vitsearch wrote it" in err and b"mine now" in edited.read_bytes()
    assert not (root / "IMG_0003.HEIC.xmp").exists(), "the other marks were undone"
    code, _, err = _dupes(store, "--undo", capsys=capsys)
    assert code == 2 and "nothing to undo" in err


def test_a_forged_marks_manifest_touches_nothing(library, capsys):
    """A marks manifest naming an image (or a file outside the library) as a sidecar it created
    is refused entry by entry; one handed in from outside the store's quarantine is refused whole."""
    root, store, _ = library
    image = root / "best.jpg"
    digest = file_digest(str(image))  # the hash a marks manifest records
    entry = {"sidecar": str(image), "image": str(image), "created": True, "before": None, "after": digest,
             "backup": None}
    quarantine = store / ".quarantine"
    quarantine.mkdir(exist_ok=True)
    forged = quarantine / "marks-20990101-000000-000000000.json"
    forged.write_text(json.dumps({"kind": "marks", "state": "written", "sidecars": [entry]}))
    code, _, err = _dupes(store, "--undo", capsys=capsys)
    assert code == 1 and "refused" in err and image.exists()
    elsewhere = root.parent / "marks-20990101-000000-000000001.json"
    elsewhere.write_text(forged.read_text())
    code, _, err = _dupes(store, "--undo", str(elsewhere), capsys=capsys)
    assert code == 2 and "not in this store's quarantine" in err and image.exists()

"""The photographer's records per image: which sidecar wins, sidecars edited, added and removed
later (read again without the model), copies with their own sidecars, `where` over the records
against exiftool's reading, and what the scan stats."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import FakeEncoder
from tests.photo_records import embed_xmp, image_with_xmp, jpeg, make_library, write_sidecar
from vitsearch.indexer import build_index
from vitsearch.indexer import scan as scan_module
from vitsearch.indexer.records import read_records
from vitsearch.indexer.scan import scan_folders
from vitsearch.indexer.store.store import open_store
from vitsearch.search.filters import matching_ids

EXIFTOOL = "/usr/bin/exiftool"


def rows(store) -> dict[str, dict]:
    found = open_store(store).records("id, path, status, rating, pick, color_label, keywords, companion_files, "
                                      "records_note", "true")
    return {os.path.basename(r["path"]): r for r in found}


def index(library, store):
    return build_index([library], store, encoder=FakeEncoder())


def test_the_specific_sidecar_wins_over_the_stem_one_over_embedded_field_by_field(tmp_path):
    (tmp_path / "IMG_1.jpg").write_bytes(embed_xmp(jpeg(1), rating=1, keywords=["embedded"], pick="picked",
                                                   label="Blue"))
    write_sidecar(tmp_path / "IMG_1.xmp", rating=2, keywords=["stem"])
    write_sidecar(tmp_path / "IMG_1.JPG.XMP", rating=3)  # darktable's name, in upper case
    row = rows(_indexed(tmp_path))["IMG_1.jpg"]
    assert (row["rating"], row["keywords"], row["pick"], row["color_label"]) == (3, ["stem"], "picked", "Blue")
    assert sorted(os.path.basename(p) for p in row["companion_files"]) == ["IMG_1.JPG.XMP", "IMG_1.xmp"]


def _indexed(library: Path) -> Path:
    store = library.parent / f"{library.name}-store"
    index(library, store)
    return store


def test_a_raw_file_reads_its_darktable_and_lightroom_sidecars(tmp_path):
    (tmp_path / "IMG_2.CR2").write_bytes(b"not decoded here")
    write_sidecar(tmp_path / "IMG_2.xmp", rating=2, keywords=["lightroom"], label="Red")
    write_sidecar(tmp_path / "IMG_2.CR2.xmp", rating=5)
    (file,) = scan_folders([tmp_path])
    assert [n for n, _, _ in file.companions] == ["IMG_2.CR2.xmp", "IMG_2.xmp"]
    records = read_records(file, b"")
    assert (records["rating"], records["keywords"], records["color_label"]) == (5, ["lightroom"], "Red")


def test_a_raw_and_jpeg_pair_share_the_stem_sidecar(tmp_path):
    (tmp_path / "IMG_3.dng").write_bytes(image_with_xmp("DNG", 3))
    (tmp_path / "IMG_3.JPG").write_bytes(jpeg(3))
    write_sidecar(tmp_path / "IMG_3.xmp", rating=4, keywords=["pair"])
    found = rows(_indexed(tmp_path))
    for name in ("IMG_3.dng", "IMG_3.JPG"):
        assert found[name]["status"] == "ok"
        assert (found[name]["rating"], found[name]["keywords"]) == (4, ["pair"])
        assert [os.path.basename(p) for p in found[name]["companion_files"]] == ["IMG_3.xmp"]


def test_sidecars_edited_added_and_removed_are_read_again_without_the_model(tmp_path):
    library = tmp_path / "library"
    library.mkdir()
    (library / "a.jpg").write_bytes(jpeg(1))
    (library / "b.jpg").write_bytes(jpeg(2))
    sidecar = write_sidecar(library / "a.jpg.xmp", rating=3)
    store = tmp_path / "store"
    first = index(library, store)
    assert first.embedded == 2 and rows(store)["a.jpg"]["rating"] == 3

    write_sidecar(sidecar, rating=5)  # the same size: only its mtime tells
    os.utime(sidecar, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    edited = index(library, store)
    assert (edited.embedded, edited.records_read) == (0, 1)
    assert rows(store)["a.jpg"]["rating"] == 5

    write_sidecar(library / "b.xmp", keywords=["added"])
    added = index(library, store)
    assert (added.embedded, added.records_read) == (0, 1)
    assert rows(store)["b.jpg"]["keywords"] == ["added"]

    sidecar.unlink()
    removed = index(library, store)
    assert (removed.embedded, removed.records_read) == (0, 1)
    row = rows(store)["a.jpg"]
    assert (row["rating"], row["companion_files"]) == (None, None)

    unchanged = index(library, store)
    assert (unchanged.embedded, unchanged.records_read) == (0, 0)


def test_a_copy_with_its_own_sidecar_has_its_own_records(tmp_path):
    (tmp_path / "one.jpg").write_bytes(embed_xmp(jpeg(4), rating=1, keywords=["embedded"]))
    shutil.copyfile(tmp_path / "one.jpg", tmp_path / "two.jpg")
    write_sidecar(tmp_path / "two.jpg.xmp", rating=5, keywords=["copy"])
    found = rows(_indexed(tmp_path))
    assert (found["one.jpg"]["rating"], found["one.jpg"]["keywords"]) == (1, ["embedded"])
    assert (found["two.jpg"]["rating"], found["two.jpg"]["keywords"]) == (5, ["copy"])


# --- `where` against exiftool's reading of the same files ------------------------------------------

def exiftool_records(paths: list[Path]) -> dict[str, dict]:
    done = subprocess.run([EXIFTOOL, "-j", "-n", "-XMP:Rating", "-XMP:Subject", "-XMP:PickLabel", "-XMP:Label",
                           *map(str, paths)], capture_output=True, text=True, timeout=120)
    return {item["SourceFile"]: item for item in json.loads(done.stdout or "[]")}


def oracle(library: Path) -> dict[str, tuple[int | None, list[str]]]:
    """name -> (rating, keywords) by exiftool, NAME.EXT.xmp over NAME.xmp over embedded, field by field."""
    images = [p for p in library.iterdir() if p.suffix.lower() in (".jpg", ".heic")]
    sidecars = [p for p in library.iterdir() if p.suffix.lower() == ".xmp"]
    read = exiftool_records(images + sidecars)
    by_lower = {p.name.lower(): str(p) for p in sidecars}
    result = {}
    for image in images:
        rating, keywords = None, []
        layers = [str(image), by_lower.get(image.stem.lower() + ".xmp"), by_lower.get(image.name.lower() + ".xmp")]
        for layer in filter(None, layers):
            item = read.get(layer, {})
            rating = item["Rating"] if "Rating" in item else rating
            subject = item.get("Subject")
            if subject:
                keywords = subject if isinstance(subject, list) else [subject]
        result[image.name] = (rating, [str(k) for k in keywords])
    return result


@pytest.mark.skipif(not os.path.exists(EXIFTOOL), reason="Debian's exiftool is the oracle here")
def test_where_over_records_equals_exiftools_reading(tmp_path):
    library = tmp_path / "library"
    make_library(library)
    write_sidecar(library / "plain.jpg.xmp", rating=4, keywords=["holiday", "plain"])
    (library / "edited.jpg").write_bytes(embed_xmp(jpeg(8), rating=5, keywords=["holiday"]))
    write_sidecar(library / "edited.xmp", rating=1)
    store = tmp_path / "store"
    index(library, store)
    expected = oracle(library)
    by_id = {r["id"]: name for name, r in rows(store).items()}
    with open_store(store).connect() as con:
        for where, wanted in (
            ("rating >= 4", {n for n, (r, _) in expected.items() if r is not None and r >= 4}),
            ("list_contains(keywords, 'holiday')", {n for n, (_, k) in expected.items() if "holiday" in k}),
            ("rating = -1", {n for n, (r, _) in expected.items() if r == -1}),
        ):
            assert {by_id[i] for i in matching_ids(con, where)} == wanted, where
            assert wanted  # the fixture has some of each


# --- what the scan stats ------------------------------------------------------------------------------

def test_the_scan_stats_only_files_that_belong_to_an_image(tmp_path, monkeypatch):
    for i in range(1000):
        (tmp_path / f"note-{i}.txt").write_bytes(b"x")
        (tmp_path / f"clip-{i}.mov").write_bytes(b"x")  # videos with no still: not a Live Photo's
    (tmp_path / "IMG_1.jpg").write_bytes(b"x")
    (tmp_path / "IMG_1.jpg.xmp").write_bytes(b"x")
    statted = []
    real = scan_module._plain_file_stat
    monkeypatch.setattr(scan_module, "_plain_file_stat", lambda entry: statted.append(entry.name) or real(entry))
    found = list(scan_folders([tmp_path]))
    (file,) = [f for f in found if f.path.endswith(".jpg")]
    assert len(found) == 1001, "each .mov with no still is a video of its own"
    assert [n for n, _, _ in file.companions] == ["IMG_1.jpg.xmp"]
    assert statted == ["IMG_1.jpg.xmp"]


def test_a_folder_of_raw_files_with_their_sidecars_scans_in_linear_time(tmp_path):
    for i in range(5000):
        (tmp_path / f"IMG_{i:05d}.CR2").touch()
        (tmp_path / f"IMG_{i:05d}.CR2.xmp").touch()
    started = time.perf_counter()
    files = list(scan_folders([tmp_path]))
    seconds = time.perf_counter() - started
    assert len(files) == 5000 and all(len(f.companions) == 1 for f in files)
    assert seconds < 3, f"{seconds:.1f} s (one pass over the folder per image took 11 s here)"


def test_the_run_reports_what_xmp_it_could_not_read(tmp_path):
    from tests.conftest import scene_bytes

    root = tmp_path / "photos"
    root.mkdir()
    (root / "a.jpg").write_bytes(scene_bytes(1))
    (root / "a.jpg.xmp").write_bytes(b"<x:xmpmeta not xml")
    (root / "b.jpg").write_bytes(scene_bytes(2))
    report = build_index([root], tmp_path / "store", encoder=FakeEncoder())
    assert [(p.rsplit("/", 1)[1], "a.jpg.xmp" in why) for p, why in report.record_notes] == [("a.jpg", True)]
    (root / "b.jpg.xmp").write_bytes(b"<!DOCTYPE x [<!ENTITY a 'b'>]><x:xmpmeta/>")
    again = build_index([root], tmp_path / "store", encoder=FakeEncoder())
    assert again.records_read == 1 and [p.rsplit("/", 1)[1] for p, _ in again.record_notes] == ["b.jpg"]

"""Which files belong to an image, and which of them move with it: a companion shared with an
image that stays never leaves (indexer.store.companions)."""

from __future__ import annotations

import os

from vitsearch.indexer.store.companions import companion_plan, companions_of, moving_companions


def _touch(folder, *names):
    for name in names:
        (folder / name).write_bytes(name.encode())


def test_companions_by_name_in_any_case():
    names = ["IMG_1.CR2.xmp", "img_1.XMP", "IMG_1.pp3", "IMG_1.CR2.pp3", "IMG_1.MOV", "IMG_1.AAE", "IMG_10.xmp",
             "IMG_1.txt", "other.xmp"]
    assert companions_of("IMG_1.CR2", names) == ["IMG_1.AAE", "IMG_1.CR2.pp3", "IMG_1.CR2.xmp", "img_1.XMP"]
    assert "IMG_1.MOV" in companions_of("IMG_1.HEIC", names), "a Live Photo's video belongs to its still"
    assert "IMG_1.MOV" not in companions_of("IMG_1.CR2", names), "a RAW has no Live Photo"


def test_a_shared_companion_stays_with_the_image_that_stays(tmp_path):
    _touch(tmp_path, "shot.jpg", "shot.tif", "shot.xmp", "shot.jpg.xmp", "shot.tif.xmp")
    jpg, tif = str(tmp_path / "shot.jpg"), str(tmp_path / "shot.tif")
    moving = moving_companions([jpg])
    assert moving == {jpg: [str(tmp_path / "shot.jpg.xmp")]}, "shot.xmp also belongs to shot.tif, which stays"
    both = moving_companions([jpg, tif])
    assert sorted(os.path.basename(p) for ps in both.values() for p in ps) == [
        "shot.jpg.xmp", "shot.tif.xmp", "shot.xmp"], "the last image of a stem to leave takes the shared one"


def test_links_and_folders_never_move_as_companions(tmp_path):
    _touch(tmp_path, "a.jpg", "elsewhere.xmp")
    os.symlink(tmp_path / "elsewhere.xmp", tmp_path / "a.jpg.xmp")
    (tmp_path / "a.xmp").mkdir()
    assert moving_companions([str(tmp_path / "a.jpg")]) == {str(tmp_path / "a.jpg"): []}


def test_a_shared_companion_goes_with_the_last_of_its_files_to_leave(tmp_path):
    _touch(tmp_path, "IMG_1.jpg", "IMG_1.tif", "IMG_1.xmp")
    jpg, tif, xmp = (str(tmp_path / n) for n in ("IMG_1.jpg", "IMG_1.tif", "IMG_1.xmp"))
    assert companion_plan([tif, jpg]) == {tif: [], jpg: [(xmp, (tif,))]}
    assert companion_plan([jpg, tif]) == {jpg: [], tif: [(xmp, (jpg,))]}


def test_a_file_of_the_same_stem_that_is_no_image_keeps_its_sidecar(tmp_path):
    """IMG_1.xmp beside IMG_1.JPG and IMG_1.PSD belongs to the PSD too: it stays with it."""
    _touch(tmp_path, "IMG_1.JPG", "IMG_1.PSD", "IMG_1.xmp")
    assert moving_companions([str(tmp_path / "IMG_1.JPG")]) == {str(tmp_path / "IMG_1.JPG"): []}


def test_a_shared_companion_stays_when_its_other_file_did_not_move(tmp_path):
    """The apply moves a shared companion only once every file it belongs to has moved."""
    from vitsearch.indexer.store.quarantine import _move_unit
    from vitsearch.indexer.store.quarantine_moves import Move, QuarantineReport
    from vitsearch.indexer.store.safe_move import file_digest

    _touch(tmp_path, "IMG_1.jpg", "IMG_1.tif", "IMG_1.xmp")
    aside = tmp_path / "aside"
    jpg, tif, xmp = (str(tmp_path / n) for n in ("IMG_1.jpg", "IMG_1.tif", "IMG_1.xmp"))
    unit = [Move(1, jpg, str(aside / "IMG_1.jpg"), 9, 0, file_digest(jpg)),
            Move(1, xmp, str(aside / "IMG_1.xmp"), 9, 0, file_digest(xmp), companion=True, shared_with=(tif,))]
    report = QuarantineReport(None)  # the tif's own move failed: it is not among the moved
    left = _move_unit(unit, None, report)
    assert left == [unit[1]] and os.path.exists(xmp) and not os.path.exists(jpg)
    assert "which stays" in report.skipped[0][1]

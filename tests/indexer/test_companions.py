"""Which files belong to an image, and which of them move with it: a companion shared with an
image that stays never leaves (indexer.store.companions)."""

from __future__ import annotations

import os

from vitsearch.indexer.store.companions import companions_of, moving_companions


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

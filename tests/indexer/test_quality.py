"""Measured quality (indexer.imaging.quality) as indexing stores it: the JPEG quality read from
the quantisation tables of files two encoders wrote, sharpness that drops with a blur, clipping
that rises with over-exposure, older stores backfilled without the model, and the facts in
--where and the rules."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from PIL import Image, ImageEnhance, ImageFilter

from tests.conftest import FakeEncoder, sample_photo
from vitsearch.indexer import build_index
from vitsearch.indexer.imaging.quality import jpeg_quality, quality_of
from vitsearch.indexer.store.store import Store

QUALITIES = range(30, 96, 5)


def _facts(store) -> dict[str, dict]:
    rows = Store(store).records("path, jpeg_quality, sharpness, clipped_shadows, clipped_highlights", "true")
    return {r["path"].rsplit("/", 1)[1]: r for r in rows}


def test_pillows_jpeg_quality_is_read_from_the_tables(tmp_path):
    photo = sample_photo("chelsea.png")
    for quality in QUALITIES:
        photo.save(tmp_path / f"q{quality}.jpg", quality=quality)
    photo.save(tmp_path / "lossless.png")
    build_index([tmp_path], tmp_path / "store", encoder=FakeEncoder())
    facts = _facts(tmp_path / "store")
    for quality in QUALITIES:
        assert abs(facts[f"q{quality}.jpg"]["jpeg_quality"] - quality) <= 5, quality
    assert facts["lossless.png"]["jpeg_quality"] is None


@pytest.mark.skipif(shutil.which("cjpeg") is None, reason="libjpeg's cjpeg (Debian libjpeg-turbo-progs)")
def test_libjpegs_jpeg_quality_is_read_from_the_tables(tmp_path):
    sample_photo("astronaut.png").save(tmp_path / "photo.ppm")
    for quality in QUALITIES:
        subprocess.run(["cjpeg", "-quality", str(quality), "-outfile", str(tmp_path / f"q{quality}.jpg"),
                        str(tmp_path / "photo.ppm")], check=True)
        estimate = jpeg_quality(Image.open(tmp_path / f"q{quality}.jpg"))
        assert estimate is not None and abs(estimate - quality) <= 5, (quality, estimate)


def test_a_blur_lowers_sharpness_and_overexposure_clips(tmp_path):
    photo = sample_photo("coffee.png")
    copies = {
        "original.jpg": photo,
        "blur-1.5.jpg": photo.filter(ImageFilter.GaussianBlur(1.5)),
        "blur-3.jpg": photo.filter(ImageFilter.GaussianBlur(3)),
        "bright.jpg": ImageEnhance.Brightness(photo).enhance(2.2),
        "dark.jpg": ImageEnhance.Brightness(photo).enhance(0.15),
    }
    for name, image in copies.items():
        image.save(tmp_path / name, quality=92)
    build_index([tmp_path], tmp_path / "store", encoder=FakeEncoder())
    facts = _facts(tmp_path / "store")
    assert facts["original.jpg"]["sharpness"] > facts["blur-1.5.jpg"]["sharpness"] > facts["blur-3.jpg"]["sharpness"]
    assert facts["bright.jpg"]["clipped_highlights"] > facts["original.jpg"]["clipped_highlights"] + 0.05
    assert facts["dark.jpg"]["clipped_shadows"] > facts["original.jpg"]["clipped_shadows"] + 0.05


def test_quality_of_compares_copies_of_different_sizes():
    photo = sample_photo("chelsea.png")
    half = photo.resize((photo.width // 2, photo.height // 2), Image.Resampling.LANCZOS)
    original, smaller = quality_of(photo), quality_of(half)
    assert abs(original.sharpness - quality_of(photo.copy()).sharpness) < 1e-6
    assert smaller.sharpness > 0 and original.clipped_highlights == pytest.approx(smaller.clipped_highlights, abs=0.01)


def test_an_older_store_is_backfilled_without_the_model(tmp_path):
    photos, store = tmp_path / "photos", tmp_path / "store"
    photos.mkdir()
    for quality in (40, 90):
        sample_photo("chelsea.png").save(photos / f"q{quality}.jpg", quality=quality)
    build_index([photos], store, encoder=FakeEncoder())
    with Store(store, read_only=False).connect() as con:  # as a store from before the quality facts
        con.execute("UPDATE images SET jpeg_quality = NULL, sharpness = NULL, clipped_shadows = NULL, "
                    "clipped_highlights = NULL")
    encoder = FakeEncoder()
    report = build_index([photos], store, encoder=encoder)
    assert report.embedded == 0 and encoder.calls == 0 and report.signed == 2
    facts = _facts(store)
    assert facts["q40.jpg"]["jpeg_quality"] == 40 and facts["q90.jpg"]["sharpness"] is not None


def test_the_facts_in_where_and_the_rules(tmp_path, capsys):
    import json

    from vitsearch.ui.cli import main

    photo = sample_photo("chelsea.png")
    for folder, copy in (("resave", lambda p: p.save(tmp_path / "resave" / "copy.jpg", quality=35)),
                         ("blur", lambda p: p.filter(ImageFilter.GaussianBlur(2.5)).save(
                             tmp_path / "blur" / "copy.jpg", quality=95))):
        (tmp_path / folder).mkdir()
        photo.save(tmp_path / folder / "original.jpg", quality=92)
        copy(photo)
        build_index([tmp_path / folder], tmp_path / f"{folder}-store", encoder=FakeEncoder())
    store = str(tmp_path / "resave-store")
    assert main(["search", str(tmp_path / "resave" / "original.jpg"), "--store", store, "--where",
                 "jpeg_quality < 50", "--json"]) == 0
    hits = [json.loads(line)["path"].rsplit("/", 1)[1] for line in capsys.readouterr().out.splitlines()]
    assert hits == ["copy.jpg"]
    for folder, rule in (("resave", "highest-jpeg-quality"), ("blur", "sharpest")):
        assert main(["dupes", "--store", str(tmp_path / f"{folder}-store"), "--resolve", rule, "--json"]) == 0
        plans = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert [p["keeper"]["path"].rsplit("/", 1)[1] for p in plans] == ["original.jpg"], rule

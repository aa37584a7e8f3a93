"""Truncated HEIC, AVIF, JPEG XL and DNG files are recorded as `truncated`, as JPEG and PNG are;
random bytes and damaged complete files keep their own reasons (shared/RELIABILITY.md)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_scenes
from tests.formats import dng_with_preview, encoded
from tests.hostile import cut_library_files
from tests.indexer.test_formats import SIDEWAYS, photo, variants
from vitsearch.indexer import build_index
from vitsearch.indexer.errors import ImageLoadError
from vitsearch.indexer.imaging.images import inspect_image, load_image
from vitsearch.indexer.store.store import Store
from vitsearch.search import ImageIndex

# a decoder's own advice ("build libjxl from source") is no reason to show a user
LEAKS = ("libjxl", "from source", "vendored", "debug mode", "stderr", "libraw", "libheif")


@functools.cache
def complete(fmt: str) -> bytes:
    """One real file per layout: JPEG XL bare and in its container (which EXIF brings), DNG as
    pidng writes it and as cameras do (a preview in IFD0, the mosaic in a SubIFD)."""
    original = photo("coffee")
    if fmt == "jxl-container":
        return encoded(original, "JXL", orientation=6)
    if fmt == "dng-preview":
        sensor = original.transpose(SIDEWAYS[6])
        return dng_with_preview(sensor, sensor, orientation=6)
    return variants(original)[fmt]


FORMATS = ["heic", "avif", "jxl", "jxl-container", "dng", "dng-preview"]


def refusal(data: bytes, **options) -> ImageLoadError:
    with pytest.raises(ImageLoadError) as refused:
        load_image(data, **options)
    return refused.value


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("percent", [10, 50, 99])
def test_a_cut_file_is_truncated_with_a_plain_detail(fmt, percent):
    data = complete(fmt)
    cut = data[: len(data) * percent // 100]
    for draft in (538, None):
        error = refusal(cut, draft_size=draft)
        assert error.reason == "truncated", (fmt, percent, draft, str(error))
        assert not any(word in error.detail.lower() for word in LEAKS), error.detail
    try:
        inspect_image(cut)  # the header alone may be whole
    except ImageLoadError as error:
        assert error.reason == "truncated", (fmt, percent, str(error))


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_file_missing_its_last_bytes_is_never_called_corrupt(fmt):
    data = complete(fmt)
    try:
        load_image(data[:-16], draft_size=538)
    except ImageLoadError as error:
        assert error.reason == "truncated", (fmt, str(error))


@pytest.mark.parametrize("fmt", FORMATS)
def test_random_bytes_and_damaged_complete_files_are_not_truncated(fmt):
    data = complete(fmt)
    rng = np.random.default_rng(len(fmt))
    middle = len(data) // 2
    damaged = data[:middle] + rng.bytes(256) + data[middle + 256:]  # same length, garbage inside
    for junk in (rng.bytes(4096), rng.bytes(len(data)), damaged):
        try:
            load_image(junk, draft_size=538)
        except ImageLoadError as error:
            assert error.reason != "truncated", (fmt, str(error))
            assert not any(word in error.detail.lower() for word in LEAKS), error.detail


def test_a_folder_of_cut_files_records_them_as_truncated_and_goes_on(tmp_path, fake_encoder):
    folder = tmp_path / "photos"
    scenes = write_scenes(folder, range(6))
    cut = cut_library_files(photo("chelsea", 400))
    for name, (data, _) in cut.items():
        (folder / name).write_bytes(data)
    report = build_index([folder], tmp_path / "store", encoder=fake_encoder, batch_size=4)
    assert report.added == len(scenes) and report.failed == len(cut), "the run goes on past each cut file"
    with Store(tmp_path / "store").connect() as con:
        rows = dict(con.execute("SELECT path, error FROM images WHERE status = 'failed'").fetchall())
    assert {Path(path).name: error for path, error in rows.items()} == {n: reason for n, (_, reason) in cut.items()}
    searcher = ImageIndex.open(tmp_path / "store", encoder=fake_encoder)
    for path in scenes:
        assert searcher.search(str(path), k=1)[0].path == str(path), "later files keep their ids"

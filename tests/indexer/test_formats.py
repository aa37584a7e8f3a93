"""Photo-library formats: HEIC (with orientation), AVIF, JPEG XL and camera RAW (DNG), made
from real photos; upright, equal to what the reference pipeline makes of the same pixels, and
their broken or hostile variants recorded with reasons."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import run_cli
from tests.formats import dng_bytes, dng_with_preview, encoded
from vitsearch.indexer.errors import ImageLoadError
from vitsearch.indexer.imaging.images import inspect_image, load_image
from vitsearch.search import ImageIndex

PHOTOS = ("astronaut", "chelsea", "coffee")
# stored = upright turned the other way, so that the file's orientation turns it back
SIDEWAYS = {6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270, 3: Image.Transpose.ROTATE_180}


def photo(name: str, width: int = 640) -> Image.Image:
    import skimage.data

    image = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
    return image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)


def variants(image: Image.Image) -> dict[str, bytes]:
    """One file per format; HEIC and DNG stored sideways with the orientation that fixes it."""
    return {
        "heic": encoded(image.transpose(SIDEWAYS[6]), "HEIF", orientation=6),
        "avif": encoded(image, "AVIF"),
        "jxl": encoded(image, "JXL"),
        "dng": dng_bytes(image.transpose(SIDEWAYS[8]), orientation=8),
    }


@pytest.mark.parametrize("fmt", ["heic", "avif", "jxl", "dng"])
def test_each_format_decodes_upright_to_the_same_picture(fmt):
    original = photo("astronaut")
    data = variants(original)[fmt]
    for draft in (None, 538):
        loaded = load_image(data, draft_size=draft)
        header = inspect_image(data)
        assert (header.info.width, header.info.height) == (loaded.info.width, loaded.info.height) == original.size
        pixels = np.asarray(loaded.image.resize(original.size, Image.Resampling.BOX), float)
        difference = np.abs(pixels - np.asarray(original, float)).mean()
        assert difference < 6, f"{fmt} draft={draft}: mean difference {difference:.1f} (sideways or wrong colours?)"


def test_raw_uses_the_embedded_preview_when_it_is_big_enough():
    """A camera's DNG: the JPEG preview it embeds is used (upright, full size) when its short side
    reaches the decode target, else a reduced demosaic of the mosaic; exact mode always demosaics."""
    original = photo("chelsea", 1400)
    sensor = original.transpose(SIDEWAYS[6])  # stored as the sensor saw it; orientation 6 turns it upright
    data = dng_with_preview(sensor, sensor, orientation=6, model="Acme P1")
    loaded = load_image(data, draft_size=538)
    assert loaded.info.format == "RAW" and loaded.info.camera == "Acme P1"
    assert not loaded.info.warnings, "the preview was used: no demosaic note"
    assert loaded.image.size == original.size, "the preview, at full size and upright"
    difference = np.abs(np.asarray(loaded.image, float) - np.asarray(original, float)).mean()
    assert difference < 4, f"preview pixels differ from the photo by {difference:.1f} (sideways?)"

    small = dng_with_preview(sensor, sensor.resize((sensor.width // 4, sensor.height // 4)), orientation=6)
    demosaiced = load_image(small, draft_size=538)
    assert any("demosaiced" in w for w in demosaiced.info.warnings), "a preview below the target is not used"
    assert demosaiced.image.size == (original.width // 2, original.height // 2), "a half-size demosaic"
    full = load_image(data, draft_size=None)
    assert full.image.size == (original.width, original.height - original.height % 2), "exact: full demosaic"
    upright = np.asarray(full.image.resize(original.size).convert("L"), float).ravel()
    correlation = np.corrcoef(upright, np.asarray(original.convert("L"), float).ravel())[0, 1]
    assert correlation > 0.95, f"the demosaic is upright too (correlation {correlation:.3f})"


def test_raw_records_camera_and_format():
    loaded = load_image(dng_bytes(photo("coffee"), make="Acme", model="Acme Z9"), draft_size=538)
    assert loaded.info.format == "RAW" and loaded.info.camera == "Acme Z9"


@pytest.mark.parametrize("fmt", ["heic", "avif", "jxl", "dng"])
def test_parity_with_the_model_card_pipeline_on_the_decoded_pixels(fmt, random_encoder):
    """Our default-mode input (reduced decode, timm's transform) against the reference fed the
    full-size decoded RGB image."""
    import timm.data

    data = variants(photo("chelsea", 1400))[fmt]
    reference_pixels = load_image(data, draft_size=None).image
    reference_transform = timm.data.create_transform(**random_encoder.data_config, is_training=False)
    ours = random_encoder.encode(torch.stack([random_encoder.preprocess(load_image(data, draft_size=538).image)]))
    reference = random_encoder.encode(torch.stack([reference_transform(reference_pixels)]))
    assert float(ours[0] @ reference[0]) >= 0.999


def patched_dimensions(dng: bytes, side: int) -> bytes:
    """The DNG with IFD0's width and height (and tile size) rewritten to `side`: a bomb header."""
    data = bytearray(dng)
    (ifd,) = struct.unpack_from("<I", data, 4)
    (count,) = struct.unpack_from("<H", data, ifd)
    for entry in range(count):
        at = ifd + 2 + 12 * entry
        tag, kind = struct.unpack_from("<HH", data, at)
        if tag in (256, 257, 322, 323):
            struct.pack_into("<I" if kind == 4 else "<H", data, at + 8, side)
    return bytes(data)


@pytest.mark.parametrize("fmt", ["heic", "avif", "jxl", "dng"])
def test_broken_files_of_each_format_are_refused_with_a_reason(fmt):
    data = variants(photo("coffee"))[fmt]
    for broken in (data[: len(data) // 2], data[:40], b"", b"this is not a photo, just text" * 10):
        with pytest.raises(ImageLoadError) as refused:
            load_image(broken, draft_size=538)
        assert refused.value.reason in ("truncated", "corrupt", "empty", "unidentified"), (fmt, refused.value)


def test_a_raw_header_declaring_a_giant_sensor_is_refused_before_decoding():
    bomb = patched_dimensions(dng_bytes(photo("coffee", 320)), 60000)
    with pytest.raises(ImageLoadError) as refused:
        load_image(bomb, draft_size=538)
    assert refused.value.reason in ("too_large", "corrupt"), refused.value


def jxl_bomb(side: int) -> bytes:
    """A JPEG XL codestream whose header declares side x side pixels, then nothing sensible."""
    fields = [(0, 1), (3, 2), (side - 1, 30), (1, 3)]  # not small; 30-bit height; ratio 1:1
    value, shift = 0, 0
    for field, width in fields:
        value |= field << shift
        shift += width
    return b"\xff\x0a" + value.to_bytes(8, "little") + bytes(range(256)) * 4


@pytest.mark.parametrize("size", [(640, 427), (8, 8), (333, 777), (4000, 3000)])
def test_the_jxl_header_reader_agrees_with_the_encoder(size):
    from vitsearch.indexer.imaging.jxl import jxl_size

    assert jxl_size(encoded(Image.new("RGB", size, (9, 99, 199)), "JXL")) == size


def test_a_jxl_declaring_a_giant_image_is_refused_before_the_plugin_decodes_it():
    with pytest.raises(ImageLoadError) as refused:
        load_image(jxl_bomb(60000), draft_size=538)
    assert refused.value.reason == "too_large"


def test_a_library_folder_indexes_and_each_copy_finds_its_original(tmp_path):
    folder = tmp_path / "library"
    folder.mkdir()
    for name in PHOTOS:
        original = photo(name)
        (folder / f"{name}.jpg").write_bytes(encoded(original, "JPEG", quality=95))
        for fmt, data in variants(original).items():
            (folder / f"{name}-{fmt}.{fmt}").write_bytes(data)
    (folder / "empty.heic").write_bytes(b"")
    (folder / "garbage.dng").write_bytes(b"II*\x00" + b"\x07" * 4000)
    (folder / "cut.jxl").write_bytes(encoded(photo("coffee"), "JXL")[:200])
    (folder / "giant.dng").write_bytes(patched_dimensions(dng_bytes(photo("coffee", 320)), 60000))
    store = tmp_path / "store"
    result = run_cli("index", folder, "--store", store, "--weights", "random", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    assert summary["added"] == 5 * len(PHOTOS) and summary["failed"] == 4, result.stderr
    for bad in ("empty.heic", "garbage.dng", "cut.jxl", "giant.dng"):
        assert f"skipping {folder / bad}: " in result.stderr
    info = json.loads(run_cli("info", "--store", store, "--json").stdout)
    assert info["formats"]["HEIC/HEIF"] and info["formats"]["JPEG XL"] and info["formats"]["camera RAW"]
    index = ImageIndex.open(store)  # indexed paths are searched with their stored vectors
    for name in PHOTOS:
        for fmt in ("heic", "avif", "jxl", "dng"):
            query = str(folder / f"{name}-{fmt}.{fmt}")
            others = [h for h in index.search(query, k=3) if h.path != query]
            assert Path(others[0].path).name.startswith(name), (query, others[0])
            original = index.search(query, k=1, where="format = 'JPEG'")[0]
            assert Path(original.path).name == f"{name}.jpg" and original.score >= 0.99, (query, original)
    raw = index.search(str(folder / "coffee.jpg"), k=1, where="format = 'RAW'")
    assert Path(raw[0].path).name == "coffee-dng.dng"


def patched_extents(heif: bytes, side: int) -> bytes:
    """The HEIF/AVIF file with every `ispe` box (the image's declared width and height) set to
    side x side: a bomb header over a small real picture."""
    data = bytearray(heif)
    at = data.find(b"ispe")
    assert at > 0, "no ispe box"
    while at > 0:
        struct.pack_into(">II", data, at + 8, side, side)  # after the type: version+flags, then sizes
        at = data.find(b"ispe", at + 4)
    return bytes(data)


@pytest.mark.parametrize("fmt", ["heic", "avif"])
@pytest.mark.parametrize("side", [20000, 60000])
def test_a_heif_declaring_a_giant_image_is_refused_with_a_reason(fmt, side):
    """libavif refuses extents that disagree with the AV1 stream (unidentified); libheif reports
    the coded size in the header, then refuses at decoding, before any giant buffer: past its
    1 Gpx limit, or because the decoded picture does not have the size the file declares."""
    bomb = patched_extents(variants(photo("coffee", 320))[fmt], side)
    with pytest.raises(ImageLoadError) as refused:
        load_image(bomb, draft_size=538)
    assert refused.value.reason in ("too_large", "corrupt", "unidentified"), refused.value
    try:
        header = inspect_image(bomb)
    except ImageLoadError as error:
        assert error.reason in ("too_large", "corrupt", "unidentified")
    else:
        assert max(header.info.width, header.info.height) < side, "a giant size is never taken from the header"

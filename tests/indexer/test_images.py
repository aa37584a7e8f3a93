"""Safe loading: hostile and awkward files from shared/RELIABILITY.md, and correct RGB."""

from __future__ import annotations

import io
import struct
import subprocess
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from tests.conftest import scene_bytes
from vitsearch.indexer.errors import ImageLoadError
from vitsearch.indexer.imaging.images import load_image, to_rgb
from vitsearch.ui.samples import make_scene


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def reason_of(data: bytes) -> str:
    with pytest.raises(ImageLoadError) as caught:
        load_image(data)
    return caught.value.reason


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height` pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty"),
        (np.random.default_rng(1).bytes(5000), "unidentified"),
        (b"just some text pretending to be a jpeg\n" * 20, "unidentified"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "unidentified"),
        (b"%PDF-1.4\n1 0 obj<<>>endobj\n", "unidentified"),
    ],
    ids=["empty", "random-bytes", "text", "eps", "pdf"],
)
def test_junk_is_refused_with_a_reason(data, reason):
    assert reason_of(data) == reason


def test_jpeg2000_renamed_is_refused_by_the_allow_list():
    j2k = encode(Image.new("RGB", (64, 64), "red"), "JPEG2000")
    assert reason_of(j2k) == "unidentified"


def test_no_external_program_is_spawned(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"spawned {args}")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    assert reason_of(eps) == "unidentified"


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.99])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_files_are_recorded_as_such(fmt, fraction):
    data = scene_bytes(3, fmt, size=(400, 300))
    cut = data[: int(len(data) * fraction)]
    started = time.monotonic()
    assert reason_of(cut) in ("truncated", "corrupt")
    assert time.monotonic() - started < 5


def test_truncated_jpeg_mostly_reports_truncated():
    data = scene_bytes(3, "JPEG", size=(400, 300))
    assert reason_of(data[: len(data) // 2]) == "truncated"


@pytest.mark.parametrize(
    "width, height, reason",
    [(40000, 40000, "too_large"), (100000, 1, "degenerate"), (1, 0, "degenerate")],
)
def test_decompression_bombs_are_refused_before_decoding(width, height, reason):
    data = png_declaring(width, height)
    assert len(data) < 4096
    # Pillow itself refuses a zero-height PNG header: any refusal before decoding will do there.
    accepted = (reason, "corrupt", "unidentified") if 0 in (width, height) else (reason,)
    assert reason_of(data) in accepted


def test_bomb_refusal_is_about_size_not_luck():
    assert reason_of(png_declaring(40000, 40000)) == "too_large"


def test_animated_gif_gives_first_frame_fast():
    frames = [Image.new("P", (32, 32), i % 256) for i in range(2000)]
    frames[0] = Image.new("RGB", (32, 32), (200, 10, 10)).convert("P")
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    started = time.monotonic()
    loaded = load_image(data)
    assert time.monotonic() - started < 2
    r, g, b = loaded.image.getpixel((5, 5))
    assert r > 150 and g < 60


def test_16bit_grayscale_is_scaled_not_clipped():
    ramp = (np.linspace(0, 65535, 256, dtype=np.uint32)[None, :].repeat(16, 0)).astype(np.uint16)
    for fmt in ("PNG", "TIFF"):
        data = encode(Image.fromarray(ramp), fmt)
        pixels = np.asarray(load_image(data).image)
        assert pixels.shape == (16, 256, 3)
        assert pixels[0, 0, 0] < 5 and pixels[0, -1, 0] > 250
        assert 100 < pixels[0, 128, 0] < 160, "mid-grey must stay mid-grey"


def test_cmyk_jpeg_becomes_correct_rgb():
    data = encode(Image.new("CMYK", (64, 64), (0, 255, 255, 0)), "JPEG", quality=95)
    r, g, b = load_image(data).image.getpixel((10, 10))
    assert r > 230 and g < 30 and b < 30


def test_transparency_is_composited_on_white():
    rgba = Image.new("RGBA", (32, 32), (255, 0, 0, 0))
    la = Image.new("LA", (32, 32), (0, 0))
    palette = Image.new("P", (32, 32), 0)
    palette.putpalette([0, 0, 0] * 256)
    palette.info["transparency"] = 0
    for image, fmt in ((rgba, "PNG"), (la, "PNG"), (palette, "PNG"), (rgba, "WEBP")):
        loaded = load_image(encode(image, fmt, **({"lossless": True} if fmt == "WEBP" else {})))
        assert loaded.image.mode == "RGB"
        assert loaded.image.getpixel((3, 3)) == (255, 255, 255), f"{image.mode} {fmt}"


def test_every_mode_converts_to_rgb():
    for mode in ("1", "L", "P", "RGB", "RGBA", "LA", "CMYK", "YCbCr", "I", "F", "I;16"):
        assert to_rgb(Image.new(mode, (4, 4))).mode == "RGB", mode


def upright_test_image() -> Image.Image:
    """Asymmetric: a red block top-left on a wide image tells any rotation or flip."""
    image = Image.new("RGB", (120, 80), (20, 20, 200))
    image.paste((230, 20, 20), (0, 0, 30, 20))
    return image


# EXIF orientation -> the transform a camera applied to the stored pixels.
_STORED_AS = {
    1: lambda im: im,
    2: lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    3: lambda im: im.transpose(Image.Transpose.ROTATE_180),
    4: lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
    5: lambda im: im.transpose(Image.Transpose.TRANSPOSE),
    6: lambda im: im.transpose(Image.Transpose.ROTATE_90),
    7: lambda im: im.transpose(Image.Transpose.TRANSVERSE),
    8: lambda im: im.transpose(Image.Transpose.ROTATE_270),
}


def oriented_jpeg(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(_STORED_AS[orientation](image), "JPEG", quality=95, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation):
    loaded = load_image(oriented_jpeg(upright_test_image(), orientation))
    assert loaded.image.size == (120, 80)
    assert (loaded.info.width, loaded.info.height) == (120, 80)
    r, g, b = loaded.image.getpixel((5, 5))
    assert r > 180 and b < 80, "the red block must be back at the top left"


def test_malformed_exif_is_indexed_without_rotation():
    good = encode(upright_test_image(), "JPEG", exif=b"Exif\x00\x00MM\x00\x2a\xff\xff\xff\xff")
    loaded = load_image(good)
    assert loaded.image.size == (120, 80)


def test_exif_capture_time_and_camera_are_read():
    exif = Image.Exif()
    exif[0x010F] = "Canon"
    exif[0x0110] = "Canon EOS 5D"
    exif.get_ifd(0x8769)[0x9003] = "2023:07:14 18:30:05"
    info = load_image(encode(upright_test_image(), "JPEG", exif=exif.tobytes())).info
    assert info.camera == "Canon EOS 5D"
    assert info.captured_at is not None and info.captured_at.year == 2023 and info.captured_at.hour == 18


def test_jpeg_draft_keeps_at_least_the_requested_size_and_records_full_size():
    data = scene_bytes(2, "JPEG", size=(3000, 2000))
    loaded = load_image(data, draft_size=538)
    assert min(loaded.image.size) >= 538 and loaded.image.size[0] < 3000
    assert (loaded.info.width, loaded.info.height) == (3000, 2000)


def test_reduced_decoding_keeps_orientation_and_size():
    photo = upright_test_image().resize((2400, 1600))
    exif = Image.Exif()
    exif[0x0112] = 6
    for fmt in ("PNG", "WEBP", "JPEG"):
        data = encode(_STORED_AS[6](photo), fmt, exif=exif.tobytes())
        loaded = load_image(data, draft_size=538)
        assert (loaded.info.width, loaded.info.height) == (2400, 1600), fmt
        assert loaded.image.size[0] > loaded.image.size[1] and min(loaded.image.size) >= 538, fmt
        assert loaded.image.size[0] < 2400, f"{fmt} decoded at reduced size"
        r, g, b = loaded.image.getpixel((20, 20))
        assert r > 180 and b < 80, fmt


def test_webp_fast_path_gives_pillows_pixels():
    import torch  # noqa: F401 - the WebP fast path runs where the model does: with torch loaded

    from vitsearch.indexer.imaging.fast_decode import decode_fast

    photo = upright_test_image().resize((600, 400))
    for options in ({"quality": 80}, {"lossless": True}):
        data = encode(photo, "WEBP", **options)
        fast = decode_fast(data, Image.open(io.BytesIO(data)))
        assert fast is not None and fast.mode == "RGB"
        assert np.array_equal(np.asarray(fast), np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))
    translucent = photo.convert("RGBA")
    translucent.putalpha(128)
    with_alpha = encode(translucent, "WEBP")
    assert decode_fast(with_alpha, Image.open(io.BytesIO(with_alpha))) is None, "alpha goes to Pillow"
    frames = [photo, photo.rotate(90)]
    animated = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:])
    assert decode_fast(animated, Image.open(io.BytesIO(animated))) is None, "animations go to Pillow"


def test_broken_webp_body_is_reported_by_pillow():
    data = encode(upright_test_image().resize((600, 400)), "WEBP", quality=80)
    broken = data[:60] + bytes(len(data) - 60)
    with pytest.raises(ImageLoadError) as caught:
        load_image(broken)
    assert caught.value.reason in ("corrupt", "truncated", "unidentified")


def test_png_fast_path_gives_pillows_pixels_and_leaves_the_rest_to_pillow():
    from vitsearch.indexer.imaging.fast_decode import decode_fast

    photo = upright_test_image().resize((600, 400))
    translucent = photo.convert("RGBA")
    translucent.putalpha(Image.linear_gradient("L").resize(photo.size))
    for image in (photo, translucent):
        data = encode(image, "PNG")
        fast = decode_fast(data, Image.open(io.BytesIO(data)))
        assert fast is not None and fast.mode == image.mode
        reference = Image.open(io.BytesIO(data))
        reference.load()
        assert np.array_equal(np.asarray(fast), np.asarray(reference))
    left_to_pillow = [encode(photo.convert("L"), "PNG"), encode(photo.convert("P"), "PNG"),
                      encode(photo, "PNG", transparency=(0, 0, 0)),
                      encode(Image.fromarray(np.asarray(photo.convert("L"), np.uint16) * 257), "PNG")]
    for data in left_to_pillow:
        assert decode_fast(data, Image.open(io.BytesIO(data))) is None


def _other_thread_progress(work) -> float:
    """How far a pure-Python thread gets while `work` runs, as a share of how far it gets while
    this thread sleeps as long: near 1 when `work` releases the GIL, near 0 when it holds it."""
    import threading

    def count_while(action) -> float:
        done, counter = threading.Event(), [0]

        def spin():
            while not done.is_set():
                counter[0] += 1

        spinner = threading.Thread(target=spin)
        spinner.start()
        started = time.perf_counter()
        action()
        elapsed = time.perf_counter() - started
        done.set()
        spinner.join()
        return counter[0] / elapsed

    busy = count_while(work)
    return busy / count_while(lambda: time.sleep(0.3))


def test_fast_decoders_release_the_gil():
    """The reader threads share the process with the thread driving the model: a decoder that
    held the GIL for a whole image would stall the model and the other readers (pyspng did)."""
    from vitsearch.indexer.imaging.fast_decode import decode_fast

    noise = np.random.default_rng(0).integers(0, 256, (2000, 2400, 3), np.uint8)  # slow to inflate
    png = encode(Image.fromarray(noise), "PNG", compress_level=1)
    webp = encode(Image.fromarray(noise), "WEBP", quality=80)
    png_image, webp_image = Image.open(io.BytesIO(png)), Image.open(io.BytesIO(webp))

    def decode_png():
        for _ in range(3):
            assert decode_fast(png, png_image) is not None

    def decode_webp():
        for _ in range(3):
            assert decode_fast(webp, webp_image, draft_size=600) is not None

    assert _other_thread_progress(decode_png) > 0.5  # pyspng: 0.2
    assert _other_thread_progress(decode_webp) > 0.5


def test_png_exif_is_read_without_decoding_the_pixels(monkeypatch):
    from PIL import PngImagePlugin

    photo = upright_test_image().resize((90, 60))
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 6, "PngCam"
    data = encode(photo, "PNG", exif=exif)
    decoded = []
    real_load = PngImagePlugin.PngImageFile.load
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", lambda self: decoded.append(1) or real_load(self))
    loaded = load_image(data)
    assert loaded.info.camera == "PngCam" and loaded.image.size == (60, 90), "orientation 6: upright"
    assert not decoded, "libvips decoded the pixels, once; Pillow never did"
    truncated = data[: len(data) // 2]
    with pytest.raises(ImageLoadError) as caught:
        load_image(truncated)
    assert caught.value.reason in ("truncated", "corrupt")


def test_a_large_webp_decodes_at_reduced_scale_in_default_mode():
    """libwebp's scaled decoding (through libvips): what the model sees stays close to a full
    decode reduced the usual way; embeddings are held to cosine 0.999 by the parity test."""
    pytest.importorskip("pyvips")
    photo = upright_test_image().resize((1200, 1100))
    data = encode(photo, "WEBP", quality=90)
    scaled = load_image(data, draft_size=500).image
    full = load_image(data).image
    assert scaled.size == (600, 550) and full.size == (1200, 1100)
    reduced = np.asarray(full.reduce(2), np.float64)
    assert np.abs(np.asarray(scaled, np.float64) - reduced).mean() < 3.0
    assert load_image(data, draft_size=700).image.size == (1200, 1100), "under twice the target: full size"


def test_a_large_rgb_png_shrinks_while_it_decodes_in_default_mode():
    """libvips' box shrink as the rows inflate: close to a full decode reduced the usual way
    (the two treat a partial box at the right and bottom edges differently); RGBA and exact mode
    decode in full."""
    pytest.importorskip("pyvips")
    photo = upright_test_image().resize((1203, 1100))
    data = encode(photo, "PNG")
    shrunk = load_image(data, draft_size=500).image
    full = load_image(data).image
    assert full.size == (1203, 1100)
    reduced = full.reduce(2)
    assert abs(shrunk.width - reduced.width) <= 1 and shrunk.height == reduced.height == 550
    inner = (slice(0, 549), slice(0, 600))  # away from the partial box at the edge
    gap = np.abs(np.asarray(shrunk, np.float64)[inner] - np.asarray(reduced, np.float64)[inner])
    assert gap.max() <= 1  # the same box means, rounded
    translucent = photo.convert("RGBA")
    assert load_image(encode(translucent, "PNG"), draft_size=500).image.size == reduced.size, "Pillow's reduce"
    assert load_image(data, draft_size=700).image.size == (1203, 1100), "under twice the target: full size"


@pytest.mark.parametrize("mode", ["P", "PA", "1", "I;16"])
def test_large_palette_bilevel_and_16_bit_images_shrink_as_rgb(mode):
    """Shrinking at load (default mode) works on the colours, not on palette indices or packed
    samples: the result matches the full-size image converted to RGB and then shrunk."""
    base = make_scene(5, (1200, 1200))
    if mode == "I;16":
        image = Image.fromarray(np.asarray(base.convert("L"), np.uint16) * 257).convert("I;16")
    elif mode == "1":
        image = base.convert("1")
    else:
        image = base.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
        if mode == "PA":
            image = image.convert("PA")
    buffer = io.BytesIO()
    image.save(buffer, "TIFF" if mode == "PA" else "PNG")
    loaded = load_image(buffer.getvalue(), draft_size=538).image
    expected = to_rgb(Image.open(io.BytesIO(buffer.getvalue()))).reduce(2)
    assert loaded.mode == "RGB" and loaded.size == expected.size == (600, 600)
    difference = np.abs(np.asarray(loaded, np.int16) - np.asarray(expected, np.int16))
    assert difference.max() <= 2

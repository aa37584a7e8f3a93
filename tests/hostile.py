"""A folder of hostile and awkward files, after shared/RELIABILITY.md, with what each should become."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import scene_bytes
from tests.formats import dng_bytes, encoded
from tests.indexer.test_images import oriented_jpeg, png_declaring

__all__ = ["cut_library_files", "make_hostile_folder"]


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def make_hostile_folder(folder: Path) -> tuple[set[str], dict[str, str]]:
    """Write the folder; return (names that must index, {name: expected failure reason})."""
    folder.mkdir(parents=True, exist_ok=True)
    valid: dict[str, bytes] = {}
    photo = Image.open(io.BytesIO(scene_bytes(11, "PNG", size=(400, 300)))).convert("RGB")
    for orientation in range(1, 9):
        valid[f"orientation-{orientation}.jpg"] = oriented_jpeg(photo, orientation)
    for i, (fmt, ext) in enumerate([("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"), ("GIF", "gif"),
                                    ("BMP", "bmp"), ("TIFF", "tif")]):
        valid[f"plain-{i}.{ext}"] = scene_bytes(20 + i, fmt)
    ramp = np.linspace(0, 65535, 200 * 150, dtype=np.uint32).reshape(150, 200).astype(np.uint16)
    valid["gray16.png"] = _encode(Image.fromarray(ramp), "PNG")
    valid["cmyk.jpg"] = _encode(Image.open(io.BytesIO(scene_bytes(30, "PNG"))).convert("CMYK"), "JPEG")
    valid["palette-alpha.png"] = _encode(_palette_with_transparency(), "PNG")
    valid["la.png"] = _encode(Image.open(io.BytesIO(scene_bytes(31, "PNG"))).convert("LA"), "PNG")
    valid["rgba.png"] = _encode(Image.open(io.BytesIO(scene_bytes(32, "PNG"))).convert("RGBA"), "PNG")
    valid["animated.gif"] = _encode(Image.new("P", (64, 64), 1), "GIF", save_all=True,
                                    append_images=[Image.new("P", (64, 64), i % 256) for i in range(500)])
    valid["quote'\"; DROP TABLE images;--.jpg"] = scene_bytes(40, "JPEG")
    valid["<script>alert(1)<.script>.png"] = scene_bytes(41, "PNG")
    valid["new\nline.jpg"] = scene_bytes(42, "JPEG")
    for name, data in valid.items():
        (folder / name).write_bytes(data)
    os.makedirs(folder / "sub", exist_ok=True)
    (folder / "sub" / "same-bytes-as-plain-0.jpg").write_bytes(valid["plain-0.jpg"])

    good = scene_bytes(50, "JPEG", size=(600, 400))
    good_png = scene_bytes(51, "PNG", size=(600, 400))
    invalid = {
        "empty.jpg": (b"", "empty"),
        "random.jpg": (np.random.default_rng(7).bytes(4096), "unidentified"),
        "text.png": (b"hello, I am not a picture\n" * 10, "unidentified"),
        "eps-renamed.jpg": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", "unidentified"),
        "pdf-renamed.jpg": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n", "unidentified"),
        "jpeg2000-renamed.jpg": (_encode(Image.new("RGB", (32, 32)), "JPEG2000"), "unidentified"),
        "cut-10.jpg": (good[: len(good) // 10], "truncated"),
        "cut-50.jpg": (good[: len(good) // 2], "truncated"),
        "cut-50.png": (good_png[: len(good_png) // 2], None),
        "bomb-40000.png": (png_declaring(40000, 40000), "too_large"),
        "bomb-100000x1.png": (png_declaring(100000, 1), "degenerate"),
    }
    invalid |= cut_library_files(photo)
    for name, (data, _) in invalid.items():
        (folder / name).write_bytes(data)
    # Not images at all: never indexed, never recorded.
    (folder / "page.html").write_text("<script>alert(1)</script>")
    (folder / "logo.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    os.symlink(folder, folder / "sub" / "loop")
    outside = folder.parent / f"{folder.name}-outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.jpg").write_bytes(scene_bytes(60, "JPEG"))
    os.symlink(outside, folder / "escape")
    expected_valid = set(valid) | {"sub/same-bytes-as-plain-0.jpg"}
    return expected_valid, {name: reason for name, (_, reason) in invalid.items()}


def cut_library_files(photo: Image.Image) -> dict[str, tuple[bytes, str]]:
    """`photo` as HEIC, AVIF, JPEG XL and DNG (each has its own decoder) cut at 10, 50 and 99%
    as a copy or a download stops, and random bytes under each extension: {name: (bytes, reason)}."""
    files = {}
    whole = {"heic": encoded(photo, "HEIF"), "avif": encoded(photo, "AVIF"), "jxl": encoded(photo, "JXL"),
             "dng": dng_bytes(photo)}
    for ext, data in whole.items():
        for percent in (10, 50, 99):
            files[f"cut-{percent}.{ext}"] = (data[: len(data) * percent // 100], "truncated")
        files[f"random.{ext}"] = (np.random.default_rng(len(ext)).bytes(4096), "unidentified")
    return files


def _palette_with_transparency() -> Image.Image:
    image = Image.open(io.BytesIO(scene_bytes(33, "PNG"))).convert("P", palette=Image.Palette.ADAPTIVE)
    image.info["transparency"] = 0
    return image

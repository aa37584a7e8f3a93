"""A folder of real photos with planted copies of each kind a cleanup must recognise."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

from PIL import Image

from vitsearch.indexer.imaging.signatures import apply_transform

ORIGINALS = ("astronaut.png", "chelsea.png")
DISTRACTORS = ("coffee.png", "rocket.jpg", "motorcycle_left.png", "retina.jpg", "hubble_deep_field.jpg",
               "horse.png", "camera.png")
# planted copy -> (tier relative to the original, transform that maps the copy onto it)
EXPECTED = {
    "exact": ("identical", None),
    "exif": ("same-pixels", None),
    "reencoded": ("near", None),
    "half": ("near", None),
    "rotated": ("near", "rotate-270"),  # planted as rotate-90: turning it back is rotate-270
    "mirrored": ("near", "mirror"),
    "cropped": ("near", None),
}


def with_exif(jpeg: bytes, camera: str, when: str) -> bytes:
    """The same JPEG (same compressed pixels) with an EXIF segment inserted after SOI."""
    exif = Image.Exif()
    exif[0x0110] = camera
    exif[0x0132] = when
    payload = exif.tobytes()
    payload = payload if payload.startswith(b"Exif") else b"Exif\x00\x00" + payload
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def plant(folder: Path) -> None:
    import skimage

    source = Path(skimage.__file__).parent / "data"
    for sub in ("copies", "others"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for name in ORIGINALS:
        stem = Path(name).stem
        original = folder / f"{stem}.jpg"
        Image.open(source / name).convert("RGB").save(original, "JPEG", quality=95)
        plain = original.read_bytes()
        original.write_bytes(with_exif(plain, "Original Camera", "2021:05:06 07:08:09"))
        copies = folder / "copies"
        shutil.copy(original, copies / f"{stem}-exact.jpg")
        (copies / f"{stem}-exif.jpg").write_bytes(with_exif(plain, "Edited Camera Model", "2022:01:02 03:04:05"))
        image = Image.open(original).convert("RGB")
        image.save(copies / f"{stem}-reencoded.jpg", "JPEG", quality=60)
        image.resize((image.width // 2, image.height // 2), Image.Resampling.LANCZOS).save(
            copies / f"{stem}-half.jpg", "JPEG", quality=90)
        apply_transform(image, "rotate-90").save(copies / f"{stem}-rotated.jpg", "JPEG", quality=95)
        apply_transform(image, "mirror").save(copies / f"{stem}-mirrored.jpg", "JPEG", quality=95)
        w, h = image.size
        image.crop((w // 40, h // 40, w - w // 40, h - h // 40)).save(copies / f"{stem}-cropped.jpg", "JPEG",
                                                                       quality=95)
    for name in DISTRACTORS:
        Image.open(source / name).convert("RGB").save(folder / "others" / f"{Path(name).stem}.jpg", "JPEG")

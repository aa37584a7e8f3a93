"""A photo library as a photo manager leaves it, for the tests of the photographer's records:
darktable-style (IMG.CR2.xmp), Lightroom-style (IMG.xmp) and embedded XMP with ratings, picks,
rejects and keywords, Apple's .aae edits and a Live Photo .mov, and planted copies among them
(larger ones, so that a size rule alone would keep the copy). XMP is written with exiv2 (pyexiv2),
the way photo managers write it, never by this project's reader."""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image

from vitsearch.ui.samples import make_scene

EMPTY = (b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>\n<x:xmpmeta xmlns:x="adobe:ns:meta/">'
         b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"></rdf:RDF></x:xmpmeta>\n'
         b'<?xpacket end="w"?>')


def xmp_values(rating=None, keywords=(), pick=None, label=None) -> dict:
    values = {}
    if rating is not None:
        values["Xmp.xmp.Rating"] = str(rating)
    if keywords:
        values["Xmp.dc.subject"] = list(keywords)
        values["Xmp.lr.hierarchicalSubject"] = [f"tags|{k}" for k in keywords]
    if pick is not None:
        values["Xmp.digiKam.PickLabel"] = {"picked": "3", "rejected": "1"}[pick]
    if label is not None:
        values["Xmp.xmp.Label"] = label
    return values


def write_sidecar(path: Path, **records) -> Path:
    import pyexiv2

    path.write_bytes(EMPTY)
    image = pyexiv2.Image(str(path))
    image.modify_xmp(xmp_values(**records))
    image.close()
    return path


def embed_xmp(data: bytes, **records) -> bytes:
    import pyexiv2

    image = pyexiv2.ImageData(data)
    try:
        image.modify_xmp(xmp_values(**records))
        return image.get_bytes()
    finally:
        image.close()


def jpeg(seed: int, size=(320, 240), quality=92, scale: float = 1.0) -> bytes:
    image = make_scene(seed, size)
    if scale != 1.0:
        image = image.resize((int(size[0] * scale), int(size[1] * scale)), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def make_library(root: Path) -> dict:
    """Write the library; returns what a photographer expects of a cleanup by largest-resolution:
    {"keep": names that must stay, "move": name -> its companions that go with it, "records":
    name -> (rating, pick, keywords), "hardlinks": names}."""
    root.mkdir(parents=True, exist_ok=True)
    # 1. a 5-star original (darktable sidecar) and its 2x upscale saved at quality 80
    (root / "best.jpg").write_bytes(jpeg(1))
    write_sidecar(root / "best.jpg.xmp", rating=5, keywords=["holiday", "beach"])
    (root / "upscaled_export.jpg").write_bytes(jpeg(1, quality=80, scale=2.0))
    # 2. a picked original (embedded XMP) and a larger copy with its own darktable sidecar
    (root / "pick.jpg").write_bytes(embed_xmp(jpeg(2), pick="picked", keywords=["holiday"]))
    (root / "pick_big.jpg").write_bytes(jpeg(2, scale=1.5))
    write_sidecar(root / "pick_big.jpg.xmp", keywords=["trip"])
    # 3. a Live Photo (HEIC, its .mov and Apple's .aae edits) and a larger JPEG of it: the copy goes, whole
    buffer = io.BytesIO()
    make_scene(3, (320, 240)).save(buffer, "HEIF", quality=90)
    (root / "IMG_0003.HEIC").write_bytes(buffer.getvalue())
    (root / "IMG_0003.MOV").write_bytes(b"\x00\x00\x00\x14ftypqt  " + os.urandom(4000))
    (root / "IMG_0003.AAE").write_bytes(b"<?xml version='1.0'?><plist><dict/></plist>")
    (root / "IMG_0003_full.jpg").write_bytes(jpeg(3, scale=1.5))
    # 4. a larger copy the photographer rejected (Lightroom-style sidecar) beside an unrated original
    (root / "reject.jpg").write_bytes(jpeg(4, scale=1.5))
    write_sidecar(root / "reject.xmp", rating=-1)
    (root / "plain.jpg").write_bytes(jpeg(4))
    # 5. one file under two names (a hard link): one image, never a copy to move
    (root / "linked_a.jpg").write_bytes(jpeg(5))
    os.link(root / "linked_a.jpg", root / "linked_b.jpg")
    # 6. a rated image with nothing like it, with a Lightroom-style sidecar and embedded keywords
    (root / "alone.jpg").write_bytes(embed_xmp(jpeg(6), rating=2, keywords=["cat"]))
    write_sidecar(root / "alone.xmp", rating=4, label="Red")
    return {
        "keep": {"best.jpg", "pick.jpg", "IMG_0003_full.jpg", "plain.jpg", "linked_a.jpg", "linked_b.jpg",
                 "alone.jpg"},
        "move": {"upscaled_export.jpg": [], "pick_big.jpg": ["pick_big.jpg.xmp"],
                 "IMG_0003.HEIC": ["IMG_0003.AAE", "IMG_0003.MOV"], "reject.jpg": ["reject.xmp"]},
        "records": {"best.jpg": (5, None, ["holiday", "beach"]), "pick.jpg": (None, "picked", ["holiday"]),
                    "pick_big.jpg": (None, None, ["trip"]), "reject.jpg": (-1, "rejected", []),
                    "alone.jpg": (4, None, ["cat"])},
        "hardlinks": {"linked_a.jpg", "linked_b.jpg"},
    }


def xmp_packet(**records) -> bytes:
    """A standalone XMP packet saying these records, written by exiv2 (pyexiv2)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        return write_sidecar(Path(folder) / "packet.xmp", **records).read_bytes()


def image_with_xmp(fmt: str, seed: int = 1, **records) -> bytes:
    """A small image of `fmt` (JPEG PNG WEBP TIFF HEIF AVIF JXL DNG) with these records embedded:
    by exiv2 where it writes the format, else by the format's own encoder (exiv2 cannot write
    XMP into HEIF/AVIF or JPEG XL) carrying an exiv2-written packet."""
    from tests.formats import dng_bytes, encoded

    image = make_scene(seed, (96, 64))
    if fmt in ("HEIF", "AVIF", "JXL"):
        return encoded(image, fmt, xmp=xmp_packet(**records))
    return embed_xmp(dng_bytes(image) if fmt == "DNG" else encoded(image, fmt), **records)


def jpeg_with_app1_xmp(payload: bytes, seed: int = 1) -> bytes:
    """A JPEG whose XMP segment (APP1, Adobe's namespace header) holds `payload` as it is: for
    packets no writer would produce (junk, cut short, entities)."""
    data = jpeg(seed, size=(64, 48))
    body = b"http://ns.adobe.com/xap/1.0/\x00" + payload
    assert len(body) <= 65533, "an APP1 segment holds at most 65533 bytes"
    return data[:2] + b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body + data[2:]


def png_with_itxt_xmp(text: str, seed: int = 1) -> bytes:
    """A PNG whose XMP chunk (iTXt XML:com.adobe.xmp) holds `text`, of any length."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", text)
    buffer = io.BytesIO()
    make_scene(seed, (64, 48)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()

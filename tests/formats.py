"""Real files of the photo-library formats, made from an RGB image: HEIC, AVIF, JPEG XL through
their Pillow encoders, and DNG (camera RAW) written from the photo's Bayer mosaic with pidng."""

from __future__ import annotations

import io
import struct
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

# XYZ (D65) -> linear sRGB: the colour matrix of a "camera" whose sensor sees sRGB primaries
_XYZ_TO_SRGB = [[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]]


def encoded(image: Image.Image, fmt: str, orientation: int = 1, **options) -> bytes:
    """`image` saved as `fmt` (HEIF, AVIF, JXL, JPEG...), with an EXIF orientation if not 1."""
    buffer = io.BytesIO()
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    image.save(buffer, fmt, quality=options.pop("quality", 92), **options)
    return buffer.getvalue()


_WHITE = 4095  # 12-bit sensor values


def _bayer(image: Image.Image) -> np.ndarray:
    """The RGGB mosaic of `image` as linear 12-bit sensor values (even width and height)."""
    rgb = np.asarray(image.convert("RGB"), np.float64) / 255.0
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    height, width = (s - s % 2 for s in linear.shape[:2])
    linear = linear[:height, :width]
    bayer = np.empty((height, width), np.uint16)
    bayer[0::2, 0::2] = np.rint(linear[0::2, 0::2, 0] * _WHITE)
    bayer[0::2, 1::2] = np.rint(linear[0::2, 1::2, 1] * _WHITE)
    bayer[1::2, 0::2] = np.rint(linear[1::2, 0::2, 1] * _WHITE)
    bayer[1::2, 1::2] = np.rint(linear[1::2, 1::2, 2] * _WHITE)
    return bayer


def dng_bytes(image: Image.Image, orientation: int = 1, make: str = "TestCam", model: str = "DNG-1") -> bytes:
    """A DNG holding the RGGB Bayer mosaic of `image` as linear 12-bit sensor values."""
    from pidng.core import RAW2DNG, DNGTags, Tag
    from pidng.defs import CalibrationIlluminant, CFAPattern, DNGVersion, PhotometricInterpretation

    bayer = _bayer(image)
    height, width = bayer.shape
    scale = _WHITE
    tags = DNGTags()
    for tag, value in (
        (Tag.ImageWidth, width), (Tag.ImageLength, height), (Tag.TileWidth, width), (Tag.TileLength, height),
        (Tag.Orientation, orientation), (Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array),
        (Tag.SamplesPerPixel, 1), (Tag.BitsPerSample, 16), (Tag.CFARepeatPatternDim, [2, 2]),
        (Tag.CFAPattern, CFAPattern.RGGB), (Tag.BlackLevel, 0), (Tag.WhiteLevel, scale),
        (Tag.ColorMatrix1, [[round(v * 10000), 10000] for row in _XYZ_TO_SRGB for v in row]),
        (Tag.CalibrationIlluminant1, CalibrationIlluminant.D65), (Tag.AsShotNeutral, [[1, 1], [1, 1], [1, 1]]),
        (Tag.BaselineExposure, [[0, 100]]), (Tag.Make, make), (Tag.Model, model),
        (Tag.DNGVersion, DNGVersion.V1_4), (Tag.DNGBackwardVersion, DNGVersion.V1_2), (Tag.PreviewColorSpace, 2),
    ):
        tags.set(tag, value)
    with tempfile.TemporaryDirectory() as folder:
        writer = RAW2DNG()
        writer.options(tags, path=folder, compress=False)
        writer.convert(bayer, filename="photo")
        return (Path(folder) / "photo.dng").read_bytes()


def dng_with_preview(image: Image.Image, preview: Image.Image, orientation: int = 1, model: str = "Acme P1") -> bytes:
    """A DNG laid out as cameras and converters write them: IFD0 holds the embedded JPEG preview
    (`preview`, as the sensor saw it), its SubIFD the Bayer mosaic of `image`. Written by hand:
    pidng writes no previews."""
    mosaic = _bayer(image).astype("<u2")
    jpeg = io.BytesIO()
    preview.convert("RGB").save(jpeg, "JPEG", quality=90)
    jpeg = jpeg.getvalue()
    matrix = [(round(v * 10000), 10000) for row in _XYZ_TO_SRGB for v in row]
    # (tag, TIFF type, values); "@..." values are offsets filled in below
    SHORT, LONG, BYTE, ASCII, RATIONAL, SRATIONAL = 3, 4, 1, 2, 5, 10
    ifd0 = [(254, LONG, [1]), (256, LONG, [preview.width]), (257, LONG, [preview.height]),
            (258, SHORT, [8, 8, 8]), (259, SHORT, [7]), (262, SHORT, [6]), (271, ASCII, b"Acme\0"),
            (272, ASCII, model.encode() + b"\0"), (273, LONG, ["@preview"]), (274, SHORT, [orientation]),
            (277, SHORT, [3]), (278, LONG, [preview.height]), (279, LONG, [len(jpeg)]), (330, LONG, ["@raw_ifd"]),
            (50706, BYTE, [1, 4, 0, 0]), (50707, BYTE, [1, 2, 0, 0]), (50708, ASCII, model.encode() + b"\0"),
            (50721, SRATIONAL, matrix), (50728, RATIONAL, [(1, 1)] * 3), (50778, SHORT, [21])]
    raw_ifd = [(254, LONG, [0]), (256, LONG, [mosaic.shape[1]]), (257, LONG, [mosaic.shape[0]]),
               (258, SHORT, [16]), (259, SHORT, [1]), (262, SHORT, [32803]), (273, LONG, ["@mosaic"]),
               (277, SHORT, [1]), (278, LONG, [mosaic.shape[0]]), (279, LONG, [mosaic.nbytes]),
               (33421, SHORT, [2, 2]), (33422, BYTE, [0, 1, 1, 2]), (50714, LONG, [0]), (50717, LONG, [_WHITE])]
    blobs = {"@preview": jpeg, "@mosaic": mosaic.tobytes()}
    sizes = {BYTE: 1, ASCII: 1, SHORT: 2, LONG: 4, RATIONAL: 8, SRATIONAL: 8}

    def packed(kind: int, values) -> bytes:
        if kind in (BYTE, ASCII):
            return bytes(values)
        if kind in (RATIONAL, SRATIONAL):
            return b"".join(struct.pack("<II" if kind == RATIONAL else "<ii", *v) for v in values)
        return struct.pack(f"<{len(values)}{'H' if kind == SHORT else 'I'}", *values)

    def length(entries) -> int:  # the IFD and the values too long to sit in it
        spill = sum(-(-len(v) * sizes[k] // 2) * 2 for _, k, v in entries if len(v) * sizes[k] > 4)
        return 2 + 12 * len(entries) + 4 + spill

    offsets = {"@ifd0": 8}
    offsets["@raw_ifd"] = offsets["@ifd0"] + length(ifd0)
    offsets["@preview"] = offsets["@raw_ifd"] + length(raw_ifd)
    offsets["@mosaic"] = offsets["@preview"] + len(jpeg) + len(jpeg) % 2

    def written(entries, start: int) -> bytes:
        head, spill = bytearray(struct.pack("<H", len(entries))), bytearray()
        spill_at = start + 2 + 12 * len(entries) + 4
        for tag, kind, values in sorted(entries):
            values = [offsets[v] if isinstance(v, str) else v for v in values] if kind != ASCII else values
            data = packed(kind, values)
            if len(data) <= 4:
                head += struct.pack("<HHI", tag, kind, len(values)) + data.ljust(4, b"\0")
            else:
                head += struct.pack("<HHII", tag, kind, len(values), spill_at + len(spill))
                spill += data + b"\0" * (len(data) % 2)
        return bytes(head + struct.pack("<I", 0) + spill)

    out = b"II*\0" + struct.pack("<I", offsets["@ifd0"]) + written(ifd0, offsets["@ifd0"])
    out += written(raw_ifd, offsets["@raw_ifd"])
    return out + blobs["@preview"] + b"\0" * (len(jpeg) % 2) + blobs["@mosaic"]

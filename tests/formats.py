"""Real files of the photo-library formats, made from an RGB image: HEIC, AVIF, JPEG XL through
their Pillow encoders, and DNG (camera RAW) written from the photo's Bayer mosaic with pidng."""

from __future__ import annotations

import io
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


def dng_bytes(image: Image.Image, orientation: int = 1, make: str = "TestCam", model: str = "DNG-1") -> bytes:
    """A DNG holding the RGGB Bayer mosaic of `image` as linear 12-bit sensor values."""
    from pidng.core import RAW2DNG, DNGTags, Tag
    from pidng.defs import CalibrationIlluminant, CFAPattern, DNGVersion, PhotometricInterpretation

    rgb = np.asarray(image.convert("RGB"), np.float64) / 255.0
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    height, width = (s - s % 2 for s in linear.shape[:2])
    linear = linear[:height, :width]
    bayer = np.empty((height, width), np.uint16)
    scale = 4095
    bayer[0::2, 0::2] = np.rint(linear[0::2, 0::2, 0] * scale)
    bayer[0::2, 1::2] = np.rint(linear[0::2, 1::2, 1] * scale)
    bayer[1::2, 0::2] = np.rint(linear[1::2, 0::2, 1] * scale)
    bayer[1::2, 1::2] = np.rint(linear[1::2, 1::2, 2] * scale)
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

"""Measured image quality, from what indexing already holds (no second decode, no model): the
JPEG quality its quantisation tables were made for, how sharp the picture is, and how much of it
is clipped to black or white. docs/quality.md says what each measures and how it was checked.

- jpeg_quality: the IJG quality (1-100) whose scaled standard tables come closest to the file's
  own (libjpeg, Pillow, most cameras and editors start from them); read from the header.
- sharpness: the variance of a Laplacian over a grey copy scaled to SHARP_SIDE pixels on its
  short side, so that copies of different sizes compare: a blur, an upscale or a re-enlarged
  thumbnail score lower than their original.
- clipped_shadows, clipped_highlights: fractions of grey levels at the ends (<= 2, >= 253);
  exposure is their sum.
- detail: how much of the picture lives at its own finest scale: the error of shrinking a
  central crop (at the decoded scale) to 3/4 and enlarging it back, against its coarse contrast.
  An upscale holds little there (a 2x upscale about 0.55 of its original's), a blur less still.
  effective_pixels = pixels * detail ** 4 ranks copies of different sizes: the exponent makes a
  2x or 1.5x upscale rank below its original, a half-size copy or a crop too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = ["Quality", "jpeg_quality", "quality_of", "detail_of", "effective_pixels", "SHARP_SIDE", "DETAIL_SHARP",
           "DETAIL_EXPONENT"]

SHARP_SIDE = 256
_LOW, _HIGH = 2, 253
# The standard tables of the JPEG specification (Annex K), in natural order, as Pillow gives them.
_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], np.float64)
_CHROMA = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99, *([99] * 32)], np.float64)


@dataclass(frozen=True)
class Quality:
    sharpness: float
    clipped_shadows: float
    clipped_highlights: float
    detail: float | None = None

    @property
    def exposure(self) -> float:
        return self.clipped_shadows + self.clipped_highlights


DETAIL_CROP = 256  # the central crop detail is measured on: bounded cost at any size
DETAIL_EXPONENT = 4  # measured: a 2x upscale keeps 0.55-0.68 of its original's detail (docs/quality.md)
DETAIL_SHARP = 0.45  # a sharp photograph's detail; effective_resolution caps at its stated size there


def effective_pixels(pixels: float, detail: float | None) -> float:
    """Pixels weighted by the detail they hold (see the module's note); None detail: as stated."""
    return pixels if detail is None else pixels * detail ** DETAIL_EXPONENT


def jpeg_quality(image: Image.Image) -> int | None:
    """The quality a JPEG's tables were scaled for (None for other formats, or no tables)."""
    tables = getattr(image, "quantization", None)
    if image.format != "JPEG" or not tables or 0 not in tables or len(tables[0]) != 64:
        return None
    found = [np.asarray(tables[0], np.float64)]
    standards = [_LUMA]
    if 1 in tables and len(tables[1]) == 64:
        found.append(np.asarray(tables[1], np.float64))
        standards.append(_CHROMA)
    errors = [sum(np.abs(np.log(_scaled(std, q)) - np.log(np.maximum(t, 1))).sum()
                  for std, t in zip(standards, found, strict=True)) for q in range(1, 101)]
    return int(np.argmin(errors)) + 1


def quality_of(image: Image.Image, decoded: Image.Image | None = None) -> Quality:
    """Sharpness and clipping of an upright RGB image as prepared for the model, and the detail of
    `decoded` (the pixels before any reduction; default `image`)."""
    detail = detail_of(decoded if decoded is not None else image)
    grey = image.convert("L")
    factor = min(grey.size) // SHARP_SIDE
    if factor >= 2:
        grey = grey.reduce(factor)  # a box filter by an integer factor first: far cheaper than resizing it all
    scale = SHARP_SIDE / min(grey.size)
    if scale != 1:
        size = (max(1, round(grey.width * scale)), max(1, round(grey.height * scale)))
        grey = grey.resize(size, Image.Resampling.BILINEAR)
    values = np.asarray(grey, np.float32)
    laplacian = (values[1:-1, :-2] + values[1:-1, 2:] + values[:-2, 1:-1] + values[2:, 1:-1]
                 - 4 * values[1:-1, 1:-1])
    sharpness = float(laplacian.var()) if laplacian.size else 0.0
    total = values.size or 1
    return Quality(round(sharpness, 3), round(float((values <= _LOW).sum()) / total, 5),
                   round(float((values >= _HIGH).sum()) / total, 5), detail)


def detail_of(image: Image.Image) -> float | None:
    """The share of a central crop's contrast that lives at its finest scale (None: too small or flat)."""
    width, height = image.size
    left, top = max(0, (width - DETAIL_CROP) // 2), max(0, (height - DETAIL_CROP) // 2)
    box = (left, top, min(width, left + DETAIL_CROP), min(height, top + DETAIL_CROP))
    crop = image.crop(box).convert("L").convert("F")  # the crop alone is converted
    w, h = crop.size
    if min(w, h) < 16:
        return None
    values = np.asarray(crop, np.float32)
    fine = _round_trip(crop, 0.75, Image.Resampling.BICUBIC)
    coarse = _round_trip(crop, 0.25, Image.Resampling.BILINEAR)
    contrast = float(np.abs(values - coarse).mean())
    if contrast < 0.5:
        return None  # flat: no detail to measure
    return round(float(np.abs(values - fine).mean()) / contrast, 5)


def _round_trip(image: Image.Image, scale: float, back: Image.Resampling) -> np.ndarray:
    small = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.Resampling.BILINEAR)
    return np.asarray(small.resize(image.size, back), np.float32)


def _scaled(standard: np.ndarray, quality: int) -> np.ndarray:
    """libjpeg's jpeg_quality_scaling: the standard table at this quality, clamped to 1..255."""
    scale = 5000 / quality if quality < 50 else 200 - 2 * quality
    return np.clip(np.floor((standard * scale + 50) / 100), 1, 255)

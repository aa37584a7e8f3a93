"""Faster pixel decoders where Pillow is slow (figures: tests/bench/decode_bench.py). WebP:
in default mode a large still photo is decoded by libwebp straight at a reduced scale (through
libvips, ~2x), else torchvision's libwebp binding decodes it about twice as fast as Pillow's
animation decoder, to Pillow's pixels. PNG: libvips' PNG loader decodes 8-bit RGB and
RGBA ~1.25x faster than Pillow, to the same pixels, and in default mode shrinks a large RGB one
as it decodes (~1.4x more); other PNGs (16-bit, palette, grey, tRNS) stay with Pillow.

Every decoder here must release the GIL while it works: the reader threads share the process
with the thread that drives the model, which needs the GIL between its ops: a decoder that holds
it for a whole decode stalls the model and the other readers for each file."""

from __future__ import annotations

import functools
import sys
import warnings

import numpy as np
from PIL import Image

__all__ = ["decode_fast"]

# torchvision 0.29 warns on every decode call that TorchCodec supersedes it; this covers all of ours.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision")


def decode_fast(data: bytes, img: Image.Image, draft_size: int | None = None) -> Image.Image | None:
    """The pixels of `data` (already opened as `img`, header checked) when a fast decoder
    applies; None means Pillow should decode it, and report whatever is wrong with it. With
    `draft_size`, a large WebP or RGB PNG may come back reduced (sides >= draft_size), as JPEGs do."""
    if img.format == "PNG":
        return _png(data, img, draft_size)
    if img.format != "WEBP" or img.mode != "RGB" or getattr(img, "n_frames", 1) != 1:
        return None
    if draft_size and min(img.size) >= 2 * draft_size:
        reduced = _webp_scaled(data, img, min(img.size) // draft_size)
        if reduced is not None:
            return reduced
    if "torch" not in sys.modules:  # importing torch costs seconds: only worth it where the model runs
        return None                 # (a cluster's decode workers use Pillow, to the same pixels)
    try:
        import torch
        from torchvision.io import ImageReadMode, decode_webp
    except ImportError:
        return None
    try:
        pixels = decode_webp(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except RuntimeError:
        return None
    if tuple(pixels.shape) != (3, img.height, img.width):
        return None
    return Image.fromarray(pixels.permute(1, 2, 0).contiguous().numpy(), "RGB")


def _png(data: bytes, img: Image.Image, draft_size: int | None = None) -> Image.Image | None:
    """8-bit RGB or RGBA without a transparency chunk or animation: libvips' pixels equal Pillow's.
    With `draft_size`, a large RGB PNG is box-shrunk by the integer factor loading would reduce it
    by, as its rows inflate: the full image is never held (~1.4x faster per PNG measured, 124 ms
    against 178 on 2-24 MP photos). Not the same pixels as Pillow's reduce at the right and
    bottom edges (the two treat a partial box differently), so default mode only. RGBA stays full: its
    transparency is composited before any reduction would be fair to it."""
    if img.mode not in ("RGB", "RGBA") or "transparency" in img.info or getattr(img, "n_frames", 1) != 1:
        return None
    # IHDR, the first chunk: bit depth then colour type (2 = RGB, 6 = RGBA); 16-bit stays with Pillow
    if data[12:16] != b"IHDR" or data[24] != 8 or data[25] != {"RGB": 2, "RGBA": 6}[img.mode]:
        return None
    vips = _vips()
    if vips is None:
        return None
    try:
        image = vips.Image.new_from_buffer(data, "", access="sequential", fail_on="warning")
        if image.format != "uchar" or (image.width, image.height, image.bands) != (*img.size, len(img.mode)):
            return None
        factor = min(img.size) // draft_size if draft_size and img.mode == "RGB" else 1
        if factor >= 2:
            image = image.shrink(factor, factor)
        pixels = _pixels(image)
    except vips.Error:
        return None  # a damaged file: Pillow decodes it and says what is wrong
    return Image.fromarray(pixels, img.mode)


def _webp_scaled(data: bytes, img: Image.Image, factor: int) -> Image.Image | None:
    """libwebp decoding straight to 1/factor of the size (through libvips), about twice as fast
    as a full decode then a reduction; not the same pixels, so only in default mode (the
    parity tests hold it to cosine 0.999)."""
    vips = _vips()
    if vips is None:
        return None
    try:
        image = vips.Image.new_from_buffer(data, "", access="sequential", scale=1.0 / factor, fail_on="warning")
        if image.bands != 3 or image.format != "uchar":
            return None
        pixels = _pixels(image)
    except vips.Error:
        return None  # Pillow decodes it and says what is wrong
    return Image.fromarray(pixels, "RGB")


def _pixels(image) -> np.ndarray:
    """A libvips uchar image decoded into an (h, w, bands) array."""
    return np.ndarray(buffer=image.write_to_memory(), dtype=np.uint8, shape=(image.height, image.width, image.bands))


@functools.cache
def _vips():
    """pyvips, set to decode on the calling thread only: the callers are parallel already, and
    libvips' own worker threads would only compete with them (~10% more CPU per PNG measured);
    None where it or its library is missing."""
    try:
        import pyvips
    except (ImportError, OSError):
        return None
    pyvips.vips_lib.vips_concurrency_set(1)
    return pyvips

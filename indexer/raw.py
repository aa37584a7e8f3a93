"""Camera RAW files through LibRaw (rawpy): the camera's embedded preview when it is big enough,
else a demosaic at reduced size. Sizes are checked from the header before any pixel is made.

LibRaw needs no external program and reads DNG, CR2, CR3, NEF, ARW, RAF, ORF, RW2, PEF, SRW and
more; rawpy is optional: without it RAW files are recorded as unreadable, never guessed at.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .errors import ImageLoadError

__all__ = ["RAW_EXTENSIONS", "RawImage", "raw_available", "looks_raw", "inspect_raw", "open_raw"]

RAW_EXTENSIONS = frozenset(".dng .cr2 .cr3 .crw .nef .nrw .arw .srf .sr2 .raf .orf .rw2 .pef .srw .x3f .3fr "
                           ".erf .kdc .mrw .mos .iiq .rwl".split())
# What RAW containers start with: TIFF (DNG, CR2, NEF, ARW, PEF, SRW, ...), Olympus and Panasonic
# TIFF variants, Fujifilm, Canon CR3 (ISO media), Sigma X3F, Minolta MRW.
_MAGICS = (b"II*\x00", b"MM\x00*", b"IIRO", b"IIRS", b"IIU\x00", b"FUJIFILMCCD-RAW", b"FOVb", b"\x00MRM")
# LibRaw's flip code -> the transpose that makes the pixels upright
_UPRIGHT = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90, 6: Image.Transpose.ROTATE_270}


def raw_available() -> bool:
    try:
        import rawpy  # noqa: F401
    except ImportError:
        return False
    return True


def looks_raw(data: bytes) -> bool:
    """Whether `data` may be a RAW file (plain TIFFs share the magic: LibRaw decides)."""
    return data.startswith(_MAGICS) or data[4:12] == b"ftypcrx "


@dataclass(frozen=True)
class RawImage:
    width: int  # upright size of the full sensor image
    height: int
    image: Image.Image | None  # upright RGB (None from inspect_raw)
    source: str  # "preview" or "demosaic"


def inspect_raw(data: bytes, check) -> RawImage | None:
    """The upright size of a RAW file from its header, or None when LibRaw says it is not one."""
    with _opened(data) as raw:
        if raw is None:
            return None
        return RawImage(*_upright_size(raw.sizes, check), None, "header")


def open_raw(data: bytes, *, preview_min_side: int | None, check) -> RawImage | None:
    """A RAW file decoded upright, or None when LibRaw says it is not one. `check(width, height)`
    refuses bombs from the header; `preview_min_side` None demosaics at full size (exact mode),
    else the embedded preview is used when its short side reaches it, or a half-size demosaic."""
    with _opened(data) as raw:
        if raw is None:
            return None
        width, height = _upright_size(raw.sizes, check)
        image = _preview(raw, preview_min_side, check) if preview_min_side is not None else None
        if image is not None:
            method = _UPRIGHT.get(raw.sizes.flip)  # previews are stored as the sensor saw them
            return RawImage(width, height, image.transpose(method) if method else image, "preview")
        # LibRaw's demosaic applies the flip itself
        return RawImage(width, height, _demosaic(raw, half=preview_min_side is not None), "demosaic")


@contextlib.contextmanager
def _opened(data: bytes):
    if not raw_available():
        if data.startswith(_MAGICS[2:]) or data[4:12] == b"ftypcrx ":
            raise ImageLoadError("unsupported", "a camera RAW file: install rawpy to read it")
        yield None
        return
    import rawpy

    try:
        raw = rawpy.imread(io.BytesIO(data))
    except rawpy.LibRawFileUnsupportedError:
        yield None
        return
    except (rawpy.LibRawError, ValueError, OSError) as e:
        raise ImageLoadError("corrupt", f"RAW header unreadable: {type(e).__name__}: {e}") from e
    with raw:
        yield raw


def _upright_size(sizes, check) -> tuple[int, int]:
    check(sizes.raw_width, sizes.raw_height)
    check(sizes.width, sizes.height)
    return (sizes.height, sizes.width) if sizes.flip in (5, 6) else (sizes.width, sizes.height)


def _preview(raw, min_side: int, check) -> Image.Image | None:
    """The camera's embedded JPEG (or bitmap) preview, if its short side reaches `min_side`."""
    import rawpy

    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError, rawpy.LibRawError):
        return None
    if thumb.format == rawpy.ThumbFormat.BITMAP:
        height, width = thumb.data.shape[:2]
        check(width, height)
        image = Image.fromarray(np.ascontiguousarray(thumb.data[..., :3]).astype(np.uint8), "RGB")
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                image = Image.open(io.BytesIO(thumb.data), formats=["JPEG"])
                check(*image.size)
                image.draft("RGB", (min_side, min_side))
                image.load()
        except (OSError, SyntaxError, ValueError):
            return None  # a broken preview: demosaic instead
        image = image.convert("RGB")
    return image if min(image.size) >= min_side else None


def _demosaic(raw, *, half: bool) -> Image.Image:
    import rawpy

    try:
        # The camera's white balance and the sRGB tone curve (LibRaw's default is BT.709's). No
        # auto-brightness: it stretches each picture by its own highlights (a dim photo comes out
        # far brighter than the camera's JPEG of it), which moves embeddings apart.
        rgb = raw.postprocess(half_size=half, use_camera_wb=True, output_bps=8, gamma=(2.4, 12.92),
                              no_auto_bright=True)
    except (rawpy.LibRawError, ValueError, MemoryError) as e:
        message = str(e)
        reason = "truncated" if "data error" in message.lower() or "eof" in message.lower() else "corrupt"
        raise ImageLoadError(reason, f"RAW decoding failed: {type(e).__name__}: {message}") from e
    return Image.fromarray(rgb, "RGB")

"""Camera RAW files through LibRaw (rawpy): the camera's embedded preview when it is big enough,
else a demosaic at reduced size. Sizes are checked from the header before any pixel is made.

LibRaw needs no external program and reads DNG, CR2, CR3, NEF, ARW, RAF, ORF, RW2, PEF, SRW and
more; rawpy is optional: without it RAW files are recorded as unreadable, never guessed at.
"""

from __future__ import annotations

import contextlib
import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import ImageLoadError
from ..extensions import RAW_EXTENSIONS

__all__ = ["RAW_EXTENSIONS", "RawImage", "raw_available", "looks_raw", "inspect_raw", "open_raw", "tiff_cut"]

# What RAW containers start with: TIFF (DNG, CR2, NEF, ARW, PEF, SRW, ...), Olympus and Panasonic
# TIFF variants, Fujifilm, Canon CR3 (ISO media), Sigma X3F, Minolta MRW.
_MAGICS = (b"II*\x00", b"MM\x00*", b"IIRO", b"IIRS", b"IIU\x00", b"FUJIFILMCCD-RAW", b"FOVb", b"\x00MRM")
# TIFF field type -> bytes per value; the tags that say where a TIFF's directories and pixels lie
_TIFF_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_PIXEL_TAGS = ((273, 279), (324, 325))  # StripOffsets/StripByteCounts, TileOffsets/TileByteCounts
_SUB_IFDS = 330
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


def tiff_cut(data: bytes) -> str | None:
    """How a TIFF-based file (DNG and most RAWs, plain TIFF) ends before what its directories
    declare: a directory, or the strips and tiles of pixels, past the end of the file. None when
    what it declares is all there, or it is not a TIFF. LibRaw only says "Input/output error"."""
    if data[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    if len(data) < 8:
        return "its header is cut short"
    order = "<" if data[:2] == b"II" else ">"
    pending, seen = [struct.unpack_from(order + "I", data, 4)[0]], set()
    while pending and len(seen) < 64:  # the IFD0 chain and SubIFDs; a loop or a maze ends here
        ifd = pending.pop()
        if ifd in seen or ifd < 8:
            continue
        seen.add(ifd)
        count = struct.unpack_from(order + "H", data, ifd)[0] if ifd + 2 <= len(data) else 0
        if ifd + 6 + 12 * count > len(data):
            return f"a directory at byte {ifd} runs past the end ({len(data)} bytes)"
        fields = _ifd_fields(data, order, ifd, count)
        if isinstance(fields, str):
            return fields
        for offsets_tag, counts_tag in _PIXEL_TAGS:
            ends = [o + c for o, c in zip(fields.get(offsets_tag, ()), fields.get(counts_tag, ()), strict=False)]
            if ends and max(ends) > len(data):
                return f"its pixel data needs {max(ends) - len(data)} bytes more than the {len(data)} present"
        pending += fields.get(_SUB_IFDS, [])
        (following,) = struct.unpack_from(order + "I", data, ifd + 2 + 12 * count)
        pending.append(following)
    return None


def _ifd_fields(data: bytes, order: str, ifd: int, count: int) -> dict[int, list[int]] | str:
    """The values of the layout tags of one directory, or how their values lie past the end."""
    wanted = {tag for pair in _PIXEL_TAGS for tag in pair} | {_SUB_IFDS}
    fields: dict[int, list[int]] = {}
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        tag, kind, number = struct.unpack_from(order + "HHI", data, entry)
        if tag not in wanted or kind not in (3, 4, 13):
            continue
        size = _TIFF_SIZES[kind] * number
        at = entry + 8 if size <= 4 else struct.unpack_from(order + "I", data, entry + 8)[0]
        if at + size > len(data):
            return f"its tag {tag} lies past the end ({len(data)} bytes)"
        fields[tag] = list(struct.unpack_from(f"{order}{number}{'H' if kind == 3 else 'I'}", data, at))
    return fields

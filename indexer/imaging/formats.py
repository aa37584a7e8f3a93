"""Which formats vitsearch opens (the allow-list and the file extensions a scan picks up), the
optional decoders, registered once, which of them this installation can read, and how to tell a
file of theirs that was cut short from a damaged one.

pillow-heif (HEIC/HEIF) and pillow-jxl-plugin (JPEG XL) plug into Pillow; rawpy (LibRaw) reads
camera RAW. Each is a regular dependency, but a missing one only takes its formats away: files
of those formats are then recorded as unreadable, with the package to install.
"""

from __future__ import annotations

import functools
import struct

from PIL import Image

from ..extensions import IMAGE_EXTENSIONS, has_image_extension
from .boxes import iso_boxes
from .jxl import jxl_cut
from .raw import raw_available, tiff_cut

__all__ = ["ALLOWED_FORMATS", "IMAGE_EXTENSIONS", "has_image_extension", "register_plugins", "readable_formats",
           "truncation", "iso_boxes"]

_BASE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "DIB", "TIFF")
_OPTIONAL_FORMATS = ("AVIF", "HEIF", "JXL")  # Pillow's AVIF, pillow-heif, pillow-jxl-plugin

# ftyp brands of HEIF still images and sequences (HEIC, AVIF and their MIAF base)
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"mif2", b"msf1", b"miaf",
                b"avif", b"avis"}


@functools.cache
def register_plugins() -> None:
    try:
        import pillow_heif

        # libheif applies the HEIF rotation and mirror (irot/imir) while decoding, and the EXIF
        # orientation it then reports is reset to 1: the orientation is applied exactly once.
        pillow_heif.register_heif_opener()
    except ImportError:
        pass
    try:
        import pillow_jxl  # noqa: F401 - importing it registers the JXL opener
    except ImportError:
        pass


def _allowed_formats() -> tuple[str, ...]:
    register_plugins()
    Image.init()
    return _BASE_FORMATS + tuple(f for f in _OPTIONAL_FORMATS if f in Image.OPEN)


# Decoders we trust; everything else (EPS, PDF, JPEG 2000, ...) is refused before decoding, and no
# external program ever runs. The JPEG opener also yields MPO, the multi-picture JPEG many phones
# write. AVIF, HEIF and JXL count when their plugin is present.
ALLOWED_FORMATS = _allowed_formats()


def readable_formats() -> dict[str, bool]:
    """Format family -> whether this installation decodes it."""
    register_plugins()
    Image.init()
    families = {"JPEG": "JPEG", "PNG": "PNG", "WebP": "WEBP", "GIF": "GIF", "BMP": "BMP", "TIFF": "TIFF",
                "AVIF": "AVIF", "HEIC/HEIF": "HEIF", "JPEG XL": "JXL"}
    readable = {name: pillow in ALLOWED_FORMATS and pillow in Image.OPEN for name, pillow in families.items()}
    readable["camera RAW"] = raw_available()
    return readable


def truncation(data: bytes) -> str | None:
    """How `data` ends before what its own container declares (HEIF/AVIF boxes, a JPEG XL
    codestream or container, TIFF and RAW directories), or None when nothing says it was cut.
    The decoders of these formats fail on a cut file with vague or misleading messages
    ("not an image", "Input/output error"), so the file's own sizes decide, never their words."""
    for cut in (heif_cut, jxl_cut, tiff_cut):
        found = cut(data)
        if found is not None:
            return found
    return None


def heif_cut(data: bytes) -> str | None:
    """How a HEIF or AVIF file ends early: a top-level box, or an item's data as its `iloc` box
    places it, running past the end of the file."""
    if data[4:8] != b"ftyp" or not _HEIF_BRANDS & _brands(data):
        return None
    for kind, start, end in iso_boxes(data, 0, len(data)):
        if end > len(data):
            return f"its '{kind.decode('latin-1')}' box needs {end - len(data)} bytes more than the {len(data)} present"
        if kind == b"meta":
            for child, child_start, child_end in iso_boxes(data, start + 4, end):  # after version and flags
                item_end = _iloc_end(data, child_start, child_end) if child == b"iloc" else 0
                if item_end > len(data):
                    return f"its image data needs {item_end - len(data)} bytes more than the {len(data)} present"
    return None


def _brands(data: bytes) -> set[bytes]:
    """The major and compatible brands of the leading ftyp box."""
    (size,) = struct.unpack_from(">I", data, 0)
    size = min(size, len(data), 4096)
    return {data[8:12]} | {data[at:at + 4] for at in range(16, size - 3, 4)}


def _iloc_end(data: bytes, start: int, end: int) -> int:
    """The furthest byte any item's file extents reach (ISO 14496-12 `iloc`); 0 if unreadable."""
    try:
        version = data[start]
        sizes = data[start + 4] << 8 | data[start + 5]
        offset_size, length_size, base_size = sizes >> 12, sizes >> 8 & 15, sizes >> 4 & 15
        index_size = sizes & 15 if version in (1, 2) else 0
        position = start + 6
        count, position = _number(data, position, 4 if version == 2 else 2, end)
        furthest = 0
        for _ in range(count):
            _, position = _number(data, position, 4 if version == 2 else 2, end)  # item id
            method = 0
            if version in (1, 2):
                method, position = _number(data, position, 2, end)
                method &= 15
            reference, position = _number(data, position, 2, end)
            base, position = _number(data, position, base_size, end)
            extents, position = _number(data, position, 2, end)
            for _ in range(extents):
                _, position = _number(data, position, index_size, end)
                offset, position = _number(data, position, offset_size, end)
                length, position = _number(data, position, length_size, end)
                if method == 0 and reference == 0:  # bytes of this file (1 and 2: idat, other items)
                    furthest = max(furthest, base + offset + length)
        return furthest
    except IndexError:
        return 0


def _number(data: bytes, position: int, size: int, end: int) -> tuple[int, int]:
    """A big-endian number of `size` bytes (0 reads nothing) and the position after it."""
    if position + size > end:
        raise IndexError("iloc box cut short")
    return int.from_bytes(data[position:position + size], "big"), position + size

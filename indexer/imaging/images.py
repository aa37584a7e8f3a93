"""Safe image loading: a format allow-list, bomb checks, EXIF orientation and correct RGB."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ImageLoadError, first_line
from .fast_decode import decode_fast
from .formats import ALLOWED_FORMATS, IMAGE_EXTENSIONS, truncation
from .jxl import jxl_size, looks_jxl
from .quality import jpeg_quality
from .raw import RawImage, inspect_raw, looks_raw, open_raw
from .signatures import Signature, signature_of

__all__ = [
    "ALLOWED_FORMATS",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "ImageHeader",
    "ImageInfo",
    "LoadedImage",
    "inspect_image",
    "load_image",
    "read_image_bytes",
    "reduce_image",
    "to_rgb",
]

MAX_PIXELS = 180_000_000  # ~180 MP: well above any camera, far below a decompression bomb
MAX_ASPECT = 100  # 100000x1 and friends are bombs or junk, not photos
MAX_FILE_BYTES = 1 << 30
BACKGROUND = (255, 255, 255)  # fixed background for transparent pixels

_EXIF_ORIENTATION = 0x0112
_EXIF_IFD = 0x8769
_EXIF_DATETIME_ORIGINAL = 0x9003
_EXIF_DATETIME = 0x0132
_EXIF_MAKE = 0x010F
_EXIF_MODEL = 0x0110


@dataclass(frozen=True)
class ImageInfo:
    """What we record about an image: its upright size, format and EXIF facts."""

    width: int
    height: int
    format: str
    captured_at: datetime | None = None
    camera: str | None = None
    warnings: tuple[str, ...] = field(default=())
    jpeg_quality: int | None = None  # the quality its quantisation tables were scaled for (JPEG only)


@dataclass(frozen=True)
class LoadedImage:
    image: Image.Image  # RGB, upright
    info: ImageInfo
    signature: Signature | None = None  # asked for by indexing (see indexer.imaging.signatures)


@dataclass(frozen=True)
class ImageHeader:
    """What the header says, before any pixel is decoded: enough to route the decode."""

    info: ImageInfo  # upright size
    mode: str  # Pillow's mode of the stored pixels, e.g. RGB, L, CMYK
    orientation: int  # EXIF orientation, 1 (as stored) to 8


def read_image_bytes(path: str) -> bytes:
    """Read a whole file, refusing absurd sizes; errors become ImageLoadError."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError as e:
        raise ImageLoadError("vanished", f"file disappeared before it was read ({e.strerror})") from e
    except OSError as e:
        raise ImageLoadError("unreadable", f"cannot read file: {e.strerror or e}") from e
    if len(data) > MAX_FILE_BYTES:
        raise ImageLoadError("too_large", f"file is larger than {MAX_FILE_BYTES >> 20} MiB")
    return data


def load_image(data: bytes, *, draft_size: int | None = None, signature: bool = False) -> LoadedImage:
    """Decode `data` into an upright RGB image.

    `draft_size` lets JPEGs decode at a reduced scale whose sides stay >= draft_size
    (the DCT does the downscaling), and camera RAW files use their embedded preview when it is
    that large; None decodes at full size. `signature` also hashes the decoded pixels.
    """
    try:
        return _load(data, draft_size, signature)
    except ImageLoadError as error:
        raise _cut_short(error, data) from error


def _load(data: bytes, draft_size: int | None, signature: bool) -> LoadedImage:
    if looks_raw(data):
        decoded = open_raw(data, preview_min_side=draft_size, check=_check_dimensions)
        if decoded is not None:
            rgb = to_rgb(_reduce(decoded.image, draft_size) if draft_size else decoded.image)
            marks = signature_of(decoded.image, 1, rgb) if signature else None
            return LoadedImage(rgb, _raw_info(data, decoded), marks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # bomb and EXIF warnings: we check and record ourselves
        img, header = _open_checked(data)
        fast = decode_fast(data, img, draft_size)
        if fast is not None:
            img = fast
        else:
            if draft_size and header.info.format in ("JPEG", "MPO"):
                img.draft(img.mode if img.mode != "YCbCr" else "RGB", (draft_size, draft_size))
            _decode(img)
        decoded = img
        if draft_size:
            img = _reduce(img, draft_size)
        upright = _apply_orientation(img, header.orientation)
        rgb = to_rgb(upright)
    marks = signature_of(decoded, header.orientation, rgb) if signature else None
    return LoadedImage(rgb, header.info, marks)


def inspect_image(data: bytes) -> ImageHeader:
    """Validate `data` and read its header and EXIF without decoding pixels (cheap for any size)."""
    try:
        if looks_raw(data):
            header = inspect_raw(data, _check_dimensions)
            if header is not None:
                return ImageHeader(_raw_info(data, header), "RAW", 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _open_checked(data)[1]
    except ImageLoadError as error:
        raise _cut_short(error, data) from error


def _cut_short(error: ImageLoadError, data: bytes) -> ImageLoadError:
    """`error`, or `truncated` where the file's own container says it ends early: the HEIF,
    AVIF, JPEG XL and RAW decoders call a cut file unidentified or corrupt, in their own words."""
    if error.reason not in ("corrupt", "unidentified"):
        return error
    cut = truncation(data)
    return error if cut is None else ImageLoadError("truncated", f"file is cut short: {cut}")


def _open_checked(data: bytes) -> tuple[Image.Image, ImageHeader]:
    """Open lazily, refuse bombs and junk shapes, read the EXIF facts."""
    if not data:
        raise ImageLoadError("empty", "file is empty (0 bytes)")
    if looks_jxl(data):  # its plugin decodes everything on open: check the declared size first
        size = jxl_size(data)
        if size is None:
            raise ImageLoadError("corrupt", "JPEG XL header unreadable")
        _check_dimensions(*size)
    img = _open(data)
    width, height = img.size
    _check_dimensions(width, height)
    notes: list[str] = []
    captured_at, camera, orientation = _read_exif(img, notes, data)
    if orientation >= 5:  # the stored pixels lie on their side
        width, height = height, width
    info = ImageInfo(width, height, img.format or "UNKNOWN", captured_at, camera, tuple(notes), jpeg_quality(img))
    return img, ImageHeader(info, img.mode, orientation)


def _open(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as e:
        raise ImageLoadError("too_large", str(e)) from e
    except UnidentifiedImageError:
        allowed = ", ".join(ALLOWED_FORMATS)
        raise ImageLoadError("unidentified", f"not an image in an allowed format ({allowed})") from None
    except (OSError, SyntaxError, ValueError, RuntimeError) as e:  # plugins (JPEG XL) raise RuntimeError
        if looks_jxl(data):  # the JXL plugin decodes on open, and its one message asks to rebuild libjxl
            raise ImageLoadError("corrupt", "JPEG XL data could not be decoded") from e
        raise ImageLoadError("corrupt", f"unreadable header: {first_line(e)}") from e


def _raw_info(data: bytes, raw: RawImage) -> ImageInfo:
    notes: list[str] = [] if raw.source != "demosaic" else ["RAW demosaiced (no usable embedded preview)"]
    captured_at, camera = _raw_exif(data, notes)
    return ImageInfo(raw.width, raw.height, "RAW", captured_at, camera, tuple(notes))


def _check_dimensions(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise ImageLoadError("degenerate", f"image declares {width}x{height} pixels")
    if width * height > MAX_PIXELS:
        raise ImageLoadError(
            "too_large", f"{width}x{height} pixels exceeds the {MAX_PIXELS // 1_000_000} MP limit"
        )
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageLoadError("degenerate", f"{width}x{height} is not a plausible image shape")


def _decode(img: Image.Image) -> None:
    try:
        img.load()  # frame 0 only for GIF/WebP animations
    except Image.DecompressionBombError as e:
        raise ImageLoadError("too_large", str(e)) from e
    except (OSError, SyntaxError, ValueError, EOFError, RuntimeError) as e:
        message = first_line(e)
        reason = "truncated" if "truncat" in message.lower() or isinstance(e, EOFError) else "corrupt"
        raise ImageLoadError(reason, f"decoding failed: {message}") from e


def reduce_image(img: Image.Image, min_side: int) -> Image.Image:
    """What loading does to a decoded image of this size (see _reduce): for callers that cut
    regions from a full-size decode and want them treated like files of that size."""
    return _reduce(img, min_side)


_INDEXED_MODES = frozenset({"1", "P", "PA"})


def _reduce(img: Image.Image, min_side: int) -> Image.Image:
    """Shrink by an integer factor (a fast box filter) while both sides stay >= min_side: what
    JPEG draft decoding does in the DCT, for PNG, WebP and the rest."""
    factor = min(img.size) // min_side
    if factor < 2:
        return img
    if img.mode in _INDEXED_MODES or img.mode.startswith("I;16"):
        img = to_rgb(img)  # a box filter over palette indices or packed 16-bit samples means nothing
    return img.reduce(factor)


def _read_exif(img: Image.Image, notes: list[str],
               data: bytes | None = None) -> tuple[datetime | None, str | None, int]:
    """Return (capture time, camera, orientation); bad EXIF is noted, not fatal."""
    try:
        exif = _png_exif(data) if img.format == "PNG" and data is not None and "exif" not in img.info \
            else img.getexif()
    except Exception as e:  # noqa: BLE001 - EXIF parsers raise anything on junk
        notes.append(f"exif unreadable: {e}")
        return None, None, 1
    return _exif_facts(exif, notes)


def _png_exif(data: bytes) -> Image.Exif:
    """A PNG's eXIf chunk found by walking the chunk headers. Pillow's getexif() decodes the
    whole image to look past the pixel data, and a fast decoder would then decode it twice."""
    exif = Image.Exif()
    position = 8  # after the signature
    while position + 8 <= len(data):
        length = int.from_bytes(data[position:position + 4], "big")
        kind = data[position + 4:position + 8]
        if kind == b"eXIf":
            exif.load(data[position + 8:position + 8 + length])
            break
        if kind == b"IEND":
            break
        position += 12 + length  # length, type, data, CRC
    return exif


def _raw_exif(data: bytes, notes: list[str]) -> tuple[datetime | None, str | None]:
    """Capture time and camera of a TIFF-based RAW (DNG, CR2, NEF, ARW...): its IFD0 is EXIF."""
    if not data.startswith((b"II*\x00", b"MM\x00*")):
        return None, None
    exif = Image.Exif()
    try:
        exif.load(data)
    except Exception as e:  # noqa: BLE001 - EXIF parsers raise anything on junk
        notes.append(f"exif unreadable: {e}")
        return None, None
    return _exif_facts(exif, notes)[:2]


def _exif_facts(exif: Image.Exif, notes: list[str]) -> tuple[datetime | None, str | None, int]:
    captured_at = camera = None
    try:
        sub = exif.get_ifd(_EXIF_IFD)
        captured_at = _parse_exif_time(sub.get(_EXIF_DATETIME_ORIGINAL) or exif.get(_EXIF_DATETIME))
        camera = _camera_name(_clean_text(exif.get(_EXIF_MAKE)), _clean_text(exif.get(_EXIF_MODEL)))
    except Exception as e:  # noqa: BLE001
        notes.append(f"exif fields unreadable: {e}")
    orientation = exif.get(_EXIF_ORIENTATION, 1)
    return captured_at, camera, orientation if orientation in range(2, 9) else 1


# EXIF orientation -> the transpose that turns the stored pixels upright (as exif_transpose does)
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _apply_orientation(img: Image.Image, orientation: int) -> Image.Image:
    """Turn the decoded pixels upright; the orientation came from the header."""
    method = _UPRIGHT.get(orientation)
    return img.transpose(method) if method is not None else img


def _camera_name(make: str | None, model: str | None) -> str | None:
    if make and model and not model.lower().startswith(make.lower()):
        return f"{make} {model}"
    return model or make


def _parse_exif_time(value) -> datetime | None:
    text = _clean_text(value)
    if not text:
        return None
    try:
        return datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None


def _clean_text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).replace("\x00", "").strip()
    return text[:200] or None


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB: alpha on a fixed background, 16-bit scaled."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return Image.fromarray(_to_uint8(np.asarray(img), mode), "L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        mode == "P" and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img.convert("RGB")


def _to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Scale 16-bit, 32-bit or float samples into 0..255 without clipping to white."""
    values = values.astype(np.float64)
    top = values.max(initial=0.0)
    if mode == "F":
        scale = 255.0 if top <= 1.0 else 1.0  # float images are 0..1 or already 0..255
    elif top <= 65535.0:
        scale = 255.0 / 65535.0  # 16-bit samples, whatever Pillow calls the mode
    else:
        scale = 255.0 / top
    return np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)

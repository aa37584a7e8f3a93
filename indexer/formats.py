"""The optional decoders, registered once, and which formats this installation can read.

pillow-heif (HEIC/HEIF) and pillow-jxl-plugin (JPEG XL) plug into Pillow; rawpy (LibRaw) reads
camera RAW. Each is a regular dependency, but a missing one only takes its formats away: files
of those formats are then recorded as unreadable, with the package to install.
"""

from __future__ import annotations

import functools

__all__ = ["register_plugins", "readable_formats"]


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


def readable_formats() -> dict[str, bool]:
    """Format family -> whether this installation decodes it."""
    from PIL import Image

    from .images import ALLOWED_FORMATS
    from .raw import raw_available

    register_plugins()
    Image.init()
    families = {"JPEG": "JPEG", "PNG": "PNG", "WebP": "WEBP", "GIF": "GIF", "BMP": "BMP", "TIFF": "TIFF",
                "AVIF": "AVIF", "HEIC/HEIF": "HEIF", "JPEG XL": "JXL"}
    readable = {name: pillow in ALLOWED_FORMATS and pillow in Image.OPEN for name, pillow in families.items()}
    readable["camera RAW"] = raw_available()
    return readable

"""The file-name extensions of the images vitsearch reads: one table for the scan, the readers and
the rule of which files belong to an image (a leaf: it imports nothing of vitsearch)."""

from __future__ import annotations

import os

__all__ = ["IMAGE_EXTENSIONS", "RAW_EXTENSIONS", "has_image_extension"]

RAW_EXTENSIONS = frozenset(".dng .cr2 .cr3 .crw .nef .nrw .arw .srf .sr2 .raf .orf .rw2 .pef .srw .x3f .3fr "
                           ".erf .kdc .mrw .mos .iiq .rwl".split())
IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .jpe .jfif .png .webp .gif .bmp .dib .tif .tiff .avif .heic .heif .hif .jxl".split()
) | RAW_EXTENSIONS


def has_image_extension(name: str) -> bool:
    """The file name ends in an extension of the formats vitsearch reads (any case)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS

"""The file-name extensions of the images and videos vitsearch reads: one table for the scan, the
readers and the rule of which files belong to an image (a leaf: it imports nothing of vitsearch)."""

from __future__ import annotations

import os

__all__ = ["IMAGE_EXTENSIONS", "RAW_EXTENSIONS", "VIDEO_EXTENSIONS", "has_image_extension", "has_video_extension"]

RAW_EXTENSIONS = frozenset(".dng .cr2 .cr3 .crw .nef .nrw .arw .srf .sr2 .raf .orf .rw2 .pef .srw .x3f .3fr "
                           ".erf .kdc .mrw .mos .iiq .rwl".split())
IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .jpe .jfif .png .webp .gif .bmp .dib .tif .tiff .avif .heic .heif .hif .jxl".split()
) | RAW_EXTENSIONS


# Containers whose video stream is sampled into frames (indexer.imaging.video). A Live Photo's
# .mov beside its still is that still's companion (indexer.store.companions), not a video.
VIDEO_EXTENSIONS = frozenset(".mp4 .mov .m4v .mkv .webm .avi .3gp .3g2 .mts .m2ts".split())


def has_image_extension(name: str) -> bool:
    """The file name ends in an extension of the formats vitsearch reads (any case)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def has_video_extension(name: str) -> bool:
    """The file name ends in the extension of a video container vitsearch samples (any case)."""
    return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS

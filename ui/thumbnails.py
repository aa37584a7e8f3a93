"""Thumbnails the web page may show: bounded size, fresh RGB pixels (no EXIF, GPS or XMP).

A video's thumbnail is one of its frames (search.video_stills): the one at a hit's time, else one
near the middle; the video file itself is never served, as a photo's original is not.

Each is written once to its own file (temporary name, then rename), so a request sending a
thumbnail never reads one that another request is still writing; Gradio copies files into its
cache the same way.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from PIL import Image

from ..indexer.errors import ImageLoadError
from ..indexer.extensions import has_video_extension
from ..indexer.imaging.images import load_image, read_image_bytes
from ..search.video_stills import still_at

__all__ = ["ThumbnailCache", "THUMB_SIDE", "PREVIEW_SIDE", "make_thumbnail"]

THUMB_SIDE = 256
PREVIEW_SIDE = 768


class ThumbnailCache:
    """Generated thumbnail files keyed by (path, size, mtime, side, time); an LRU of what exists."""

    def __init__(self, folder: str | os.PathLike | None = None, capacity: int = 4096):
        if folder is None:
            parent = os.environ.get("GRADIO_TEMP_DIR") or None
            folder = tempfile.mkdtemp(prefix="vitsearch-thumbs-", dir=parent)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.capacity = capacity
        self._items: OrderedDict[tuple, Path] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str, size: int | None, mtime_key, side: int = THUMB_SIDE, at: float | None = None) -> str:
        """The path of a JPEG thumbnail of `path`, made if not made yet; for a video, of its
        frame at `at` seconds (None: near the middle)."""
        at = None if at is None else round(float(at), 3)  # frame times are stored to the millisecond
        key = (path, size, str(mtime_key), side) + ((at,) if at is not None else ())
        with self._lock:
            known = self._items.get(key)
            if known is not None and known.exists():  # a cache sweep may have removed it
                self._items.move_to_end(key)
                return str(known)
        target = self.folder / (hashlib.blake2b(repr(key).encode(), digest_size=16).hexdigest() + ".jpg")
        if not target.exists():
            _write_atomically(make_thumbnail(path, side, at), target)
        with self._lock:
            self._items[key] = target
            while len(self._items) > self.capacity:
                _, old = self._items.popitem(last=False)
                old.unlink(missing_ok=True)
        return str(target)


def _write_atomically(image: Image.Image, target: Path) -> None:
    fd, staging = tempfile.mkstemp(dir=target.parent, prefix=".thumb-", suffix=".jpg")
    try:
        with os.fdopen(fd, "wb") as f:
            image.save(f, "JPEG", quality=85)
        os.replace(staging, target)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise


def make_thumbnail(path: str, side: int, at: float | None = None) -> Image.Image:
    """A new image of at most side x side (a video's frame at `at` seconds, None: near its
    middle); a grey tile stands in for an unreadable file."""
    try:
        if has_video_extension(path):  # the indexer's own rule for what is a video
            image = still_at(path, at, side)
        else:
            image = load_image(read_image_bytes(path), draft_size=side).image.copy()
    except ImageLoadError:
        return Image.new("RGB", (side, side), (90, 90, 90))
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return Image.frombytes("RGB", image.size, image.tobytes())  # pixels only, no metadata

"""Thumbnails the web page may show: bounded size, fresh RGB pixels (no EXIF, GPS or XMP)."""

from __future__ import annotations

import threading
from collections import OrderedDict

from PIL import Image

from indexer.errors import ImageLoadError
from indexer.images import load_image, read_image_bytes

__all__ = ["ThumbnailCache", "THUMB_SIDE", "PREVIEW_SIDE"]

THUMB_SIDE = 256
PREVIEW_SIDE = 768


class ThumbnailCache:
    """Small LRU of generated thumbnails keyed by (path, size, mtime, side)."""

    def __init__(self, capacity: int = 2048):
        self.capacity = capacity
        self._items: OrderedDict[tuple, Image.Image] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str, size: int | None, mtime_key, side: int = THUMB_SIDE) -> Image.Image:
        key = (path, size, mtime_key, side)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        thumb = make_thumbnail(path, side)
        with self._lock:
            self._items[key] = thumb
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return thumb


def make_thumbnail(path: str, side: int) -> Image.Image:
    """A new image of at most side x side; a grey tile stands in for an unreadable file."""
    try:
        loaded = load_image(read_image_bytes(path), draft_size=side)
        image = loaded.image.copy()
    except ImageLoadError:
        return Image.new("RGB", (side, side), (90, 90, 90))
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return Image.frombytes("RGB", image.size, image.tobytes())  # pixels only, no metadata

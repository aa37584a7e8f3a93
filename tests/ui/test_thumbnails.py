"""Thumbnails: bounded, metadata-free, and written so that no reader ever sees half a file."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from PIL import Image

from tests.conftest import write_scenes
from vitsearch.ui.thumbnails import ThumbnailCache


def test_concurrent_requests_for_one_thumbnail_never_read_a_torn_file(tmp_path):
    photo = write_scenes(tmp_path / "photos", [3])[0]
    cache = ThumbnailCache(tmp_path / "thumbs")
    stop = threading.Event()
    torn = []

    def reader():
        while not stop.is_set():
            files = list((tmp_path / "thumbs").glob("[!.]*.jpg"))  # not the staging files
            for target in files:  # noqa: B007
                try:
                    Image.open(target).load()
                except FileNotFoundError:
                    pass  # this test removed it meanwhile
                except OSError as e:  # a file caught mid-write
                    torn.append(str(e))

    def request(i):
        # Forget what is known so that every call writes the file again, as concurrent first
        # requests for one thumbnail would.
        with cache._lock:  # the cache's own lock: clearing beside a get() would race the test, not the cache
            cache._items.clear()
        for known in (tmp_path / "thumbs").glob("[!.]*.jpg"):
            known.unlink(missing_ok=True)
        return cache.get(str(photo), photo.stat().st_size, photo.stat().st_mtime_ns)

    watcher = threading.Thread(target=reader, daemon=True)
    watcher.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            paths = set(pool.map(request, range(200)))
    finally:  # a failure must not leave the reader spinning (pytest would never exit)
        stop.set()
        watcher.join()
    assert len(paths) == 1 and not torn, torn[:3]
    assert not list((tmp_path / "thumbs").glob(".thumb-*")), "no staging files left behind"


def test_thumbnails_are_small_fresh_pixels(tmp_path):
    photo = write_scenes(tmp_path / "photos", [4])[0]
    cache = ThumbnailCache(tmp_path / "thumbs")
    path = cache.get(str(photo), 1, 2, side=64)
    thumb = Image.open(path)
    assert max(thumb.size) <= 64 and not thumb.getexif()
    assert cache.get(str(photo), 1, 2, side=64) == path, "made once, then reused"
    assert cache.get(str(tmp_path / "gone.jpg"), 1, 2, side=64) != path, "a missing file gets a grey tile"

"""A video's still for the page: the frame at the asked time (a keyframe far before it too), one
near the middle without a time, bounded; a broken video is ImageLoadError, and its thumbnail a
grey tile; the page's kind filter."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tests.videos import frame_at, scene_shots, write_clip
from vitsearch.indexer.errors import ConfigError, ImageLoadError
from vitsearch.search import video_stills
from vitsearch.search.video_stills import still_at
from vitsearch.ui.filters import build_where
from vitsearch.ui.thumbnails import ThumbnailCache, make_thumbnail

FPS = 15


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stills")
    shots = scene_shots([1, 2, 3, 4])  # 12 s, a slow pan within each shot: every frame differs
    # x264's default keyframes (at the cuts only, 3 s apart: a still between them decodes forward
    # from the cut) and a phone's (every second)
    return (write_clip(folder / "trip.mp4", shots, fps=FPS),
            write_clip(folder / "phone.mp4", shots, fps=FPS, gop=FPS))


def difference(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b.resize(a.size), np.float32)).mean())


def nearest_time(path, still: Image.Image, around: float) -> float:
    """The time, among the frames within 0.5 s of `around`, whose full decode looks most like `still`."""
    candidates = np.round(np.maximum(0.0, around + np.arange(-7, 8) / FPS), 3)
    return float(min(candidates, key=lambda t: difference(still, frame_at(path, t))))


@pytest.mark.parametrize("seconds", [0.0, 2.4, 7.0, 10.13])
def test_the_still_is_the_frame_at_the_asked_time(clips, seconds):
    for path in clips:
        still = still_at(str(path), seconds, max_side=320)  # the clip's own size: no scaling
        assert still.size == (320, 240) and still.mode == "RGB"
        assert abs(nearest_time(path, still, seconds) - seconds) <= 1 / FPS + 1e-3, path.name
        assert difference(still, frame_at(path, seconds)) < 1.0, path.name


def test_a_still_is_bounded_and_without_a_time_comes_from_the_middle(clips):
    path = clips[0]
    small = still_at(str(path), 7.0, max_side=100)
    assert max(small.size) == 100 and not small.info
    middle = still_at(str(path), None, max_side=320)
    # keyframes at the cuts (0, 3, 6, 9 s): the one before the middle (6 s) starts the third shot
    assert 5.5 <= nearest_time(path, middle, 6.0) <= 6.5
    assert difference(still_at(str(path), 99.0, max_side=320), frame_at(path, 11.9)) < 1.0, "past the end: the last"


def test_the_forward_decode_is_bounded(clips, monkeypatch):
    monkeypatch.setattr(video_stills, "MAX_FORWARD_FRAMES", 20)
    with pytest.raises(ImageLoadError) as caught:
        still_at(str(clips[0]), 8.9, max_side=64)  # 43 frames after the keyframe at the cut (6 s)
    assert caught.value.reason == "timeout"
    assert still_at(str(clips[0]), 6.9, max_side=64).size == (64, 48), "13 frames in: within the bound"
    assert still_at(str(clips[1]), 8.9, max_side=64).size == (64, 48), "a keyframe every second"


@pytest.mark.parametrize("damage", ["truncated", "junk", "empty", "folder"])
def test_a_broken_video_is_an_image_load_error_and_a_grey_thumbnail(clips, tmp_path, damage):
    data = clips[0].read_bytes()
    broken = tmp_path / "broken.mp4"
    if damage == "truncated":
        broken.write_bytes(data[: len(data) // 3])
    elif damage == "junk":
        broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 64)
    elif damage == "empty":
        broken.write_bytes(b"")
    else:
        broken.mkdir()
    with pytest.raises(ImageLoadError):
        still_at(str(broken), 7.0, max_side=64)
    tile = make_thumbnail(str(broken), 64, at=7.0)
    assert tile.size == (64, 64) and tile.getpixel((10, 10)) == (90, 90, 90)


def test_a_video_thumbnail_is_its_frame_cached_per_time(clips, tmp_path):
    path = clips[0]
    cache = ThumbnailCache(tmp_path / "thumbs")
    stat = path.stat()
    at_seven = cache.get(str(path), stat.st_size, stat.st_mtime_ns, side=128, at=7.0)
    at_two = cache.get(str(path), stat.st_size, stat.st_mtime_ns, side=128, at=2.0)
    assert at_seven != at_two and cache.get(str(path), stat.st_size, stat.st_mtime_ns, side=128, at=7.0) == at_seven
    with Image.open(at_seven) as thumb:
        assert thumb.format == "JPEG" and max(thumb.size) == 128 and not thumb.getexif()
        assert difference(thumb.convert("RGB"), frame_at(path, 7.0)) < 6.0  # JPEG and a scale apart


def test_the_kind_filter_is_a_where_clause():
    assert build_where(kind="video") == "kind = 'video'"
    assert build_where(folder="/a", kind="image") == "starts_with(path, '/a') AND kind = 'image'"
    assert build_where(kind="") is None and build_where() is None
    with pytest.raises(ConfigError):
        build_where(kind="video' OR 1=1 --")

"""One still of an indexed video, as the page shows it: the frame shown at a time (or near the
middle), found by a seek and a bounded forward decode, scaled down by FFmpeg, upright, fresh RGB.

Bounds, as for the indexer's reads (indexer.imaging.video): frames declared larger than MAX_PIXELS
are refused before decoding, FFmpeg's own reads give up after TIME_LIMIT_S, and so does the decode
forward from the keyframe before the time. Only the demuxers of the containers vitsearch indexes
and only local files are allowed, so a file that claims to be a video cannot make FFmpeg open
another file or a URL on the page's behalf.
"""

from __future__ import annotations

import os
import stat
import time

from PIL import Image

from ..indexer.errors import ImageLoadError, first_line
from ..indexer.imaging.video import MAX_PIXELS
from ..indexer.imaging.video_open import open_video

__all__ = ["still_at", "TIME_LIMIT_S", "MAX_FORWARD_FRAMES"]

# A still is asked for while a page waits: a 1080p phone clip needs well under a second, and a
# gallery of twelve videos must not hold its request for minutes behind one bad file.
TIME_LIMIT_S = 10.0
# Frames decoded forward from the keyframe before the time: 20 s of 60 fps footage, more than the
# keyframe spacing of phone and camera encoders (x264's default is 10 s of still footage).
MAX_FORWARD_FRAMES = 1200


def still_at(path: str, seconds: float | None = None, max_side: int = 768) -> Image.Image:
    """The frame of the video at `path` shown at `seconds` (the first at or after it; None: the
    keyframe nearest before the middle), at most max_side x max_side. ImageLoadError (with a
    reason) for a file that is not a readable video, as indexing says it."""
    import av

    _require_regular_file(path)
    deadline = time.monotonic() + TIME_LIMIT_S
    # the indexer's safe open: its containers and local files only, and its pixel limit set on
    # every decoder FFmpeg opens (a stream may declare a larger frame than its container)
    container = open_video(path, TIME_LIMIT_S)
    try:
        frame = _frame_at(container, seconds, deadline)
        return _upright(frame, max_side)
    except av.error.FFmpegError as e:
        raise ImageLoadError("corrupt", f"the video cannot be decoded: {first_line(e)}") from e
    except MemoryError as e:
        raise ImageLoadError("too_large", "decoding ran out of memory") from e
    finally:
        container.close()


def _require_regular_file(path: str) -> None:
    """A FIFO or a device would block or stream forever: only a regular file with bytes is read."""
    try:
        info = os.stat(path)
    except OSError as e:
        raise ImageLoadError("vanished" if isinstance(e, FileNotFoundError) else "unreadable",
                             e.strerror or str(e)) from e
    if not stat.S_ISREG(info.st_mode):
        raise ImageLoadError("unreadable", "not a regular file")
    if info.st_size == 0:
        raise ImageLoadError("empty", "the file is empty (0 bytes)")


def _frame_at(container, seconds: float | None, deadline: float):
    if not container.streams.video:
        raise ImageLoadError("unsupported", "no video stream")
    stream = container.streams.video[0]
    width, height = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
    if width <= 0 or height <= 0:
        raise ImageLoadError("corrupt", "the video stream declares no frame size")
    if width * height > MAX_PIXELS:
        raise ImageLoadError("too_large", f"{width}x{height} frames are more than {MAX_PIXELS // 1_000_000} MP")
    target = _middle(container, stream) if seconds is None else max(0.0, float(seconds))
    if target > 0 and stream.time_base:
        # backward: the keyframe at or before the time, from which the frame decodes correctly
        container.seek(int(target / stream.time_base), stream=stream, backward=True, any_frame=False)
    last = None
    for count, frame in enumerate(container.decode(stream), start=1):
        last = frame
        # a time rounded to the millisecond (as frames are stored) still finds its own frame
        if seconds is None or frame.time is None or frame.time >= target - 1e-3:
            return frame
        if count >= MAX_FORWARD_FRAMES or time.monotonic() > deadline:
            raise ImageLoadError("timeout", f"no frame at {target:.1f} s within the decode limit")
    if last is None:
        raise ImageLoadError("truncated", "no frame of the video stream could be decoded")
    return last  # a time past the last frame: the last frame


def _middle(container, stream) -> float:
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base) / 2
    if container.duration is not None:
        return container.duration / 2_000_000  # AV_TIME_BASE, halved
    return 0.0


def _upright(frame, max_side: int) -> Image.Image:
    """The frame as RGB within max_side, turned as the container's display matrix says (FFmpeg
    gives the angle counter-clockwise, as indexing reads it)."""
    width, height = frame.width, frame.height
    scale = min(1.0, max_side / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    image = frame.to_image(width=size[0], height=size[1], interpolation="AREA")
    rotation = int(getattr(frame, "rotation", 0) or 0) % 360
    if rotation:
        image = image.rotate(rotation, expand=True)
    return Image.frombytes("RGB", image.size, image.tobytes())  # pixels only

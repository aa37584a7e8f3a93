"""Videos read safely through PyAV (FFmpeg's libraries, which its wheels carry): the container's
facts and a bounded sample of frames, chosen mostly without decoding the stream.

Frames come from keyframes first: the container's index (MP4, MOV) or one pass of demuxing lists
them without decoding, an encoder puts them at scene cuts, and a keyframe decodes alone. Where a
gap between keyframes is wider than the spacing wanted (x264 places one every 10 s of still
footage), frames are decoded forward from the keyframe before, within a budget. Near-black and
flat frames (intros, fades, a lens cap) are left out: they would match every other video's.

Bounds, so that one hostile file never stalls or floods a run: only the containers of the video
extensions are opened (an image or a playlist under a video's name is refused, and FFmpeg reads no
other file), a file cut short is told by its container's sizes before any decode, a frame over
MAX_PIXELS is refused, declared or met in the stream (FFmpeg's decoders check it before they
allocate), at most MAX_FRAMES frames are kept, frames are scaled down by FFmpeg to the size the
model needs, and a video that takes longer than TIME_LIMIT_S stops there (FFmpeg's own reads are
interrupted too; every loop looks at the clock).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from ..errors import ImageLoadError
from .video_open import DECODER_OPTIONS, MAX_PIXELS, ffmpeg_message, open_video

__all__ = ["VideoInfo", "VideoSample", "read_video", "video_vector", "MAX_FRAMES", "FRAME_SPACING_S", "TIME_LIMIT_S",
           "MAX_PIXELS"]

MAX_FRAMES = 64  # per video: a feature film is sampled as sparsely as a long clip
FRAME_SPACING_S = 2.0  # the densest sample: one frame per 2 s of footage
TIME_LIMIT_S = 120.0  # one video's decode; a 1080p phone clip takes well under a second
# frames decoded to fill the gaps between sparse keyframes, per frame kept
GAP_DECODE_BUDGET = 24
MAX_DECODE_ERRORS = 16  # damaged parts met before a video's sampling gives up
# A frame is left out when its luma has less spread than this (flat: black, white, a fade's
# middle) or is this dark on average: it says nothing about the footage.
FLAT_LUMA_STD = 6.0
DARK_LUMA_MEAN = 14.0


@dataclass(frozen=True)
class VideoInfo:
    """What we record about a video: its upright frame size and the container's facts."""

    width: int
    height: int
    format: str  # the container, as FFmpeg names it (mov,mp4,m4a,... is said "MP4")
    duration: float  # seconds
    fps: float | None
    codec: str
    bitrate: int | None  # bits per second, the container's
    captured_at: datetime | None = None
    warnings: tuple[str, ...] = field(default=())
    camera: str | None = None  # what ImageInfo has: videos carry none here
    jpeg_quality: int | None = None


@dataclass
class VideoSample:
    """The frames chosen from one video, upright RGB, at least the model's size, in time order."""

    info: VideoInfo
    times: list[float]
    images: list  # PIL images
    left_out: int = 0  # near-black or flat frames not kept


def read_video(path: str, *, min_side: int | None = None, max_frames: int = MAX_FRAMES,
               spacing: float = FRAME_SPACING_S, time_limit: float = TIME_LIMIT_S) -> VideoSample:
    """Sample `path`'s frames; ImageLoadError (with a reason) for anything that is not a readable
    video. `min_side`: frames are scaled down while their short side stays >= it (None: full size)."""
    import av

    deadline = time.monotonic() + time_limit
    container = open_video(path, time_limit)
    try:
        return _sample(container, min_side, max_frames, spacing, deadline)
    except av.error.ExitError as e:  # the interrupt callback: a read outlasted the time limit
        raise ImageLoadError("timeout", f"reading the video took over {time_limit:.0f} s") from e
    except av.error.ArgumentError as e:  # EINVAL from a decoder: the frame size over max_pixels
        raise ImageLoadError("too_large", f"its frames are larger than {MAX_PIXELS // 1_000_000} MP: "
                                          "the decoder refused them") from e
    except av.error.FFmpegError as e:
        raise ImageLoadError("corrupt", f"the video cannot be decoded: {ffmpeg_message(e)}") from e
    except MemoryError as e:
        raise ImageLoadError("too_large", "decoding ran out of memory") from e
    finally:
        container.close()


def _sample(container, min_side, max_frames, spacing, deadline) -> VideoSample:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        held = f"{', '.join(kinds)} streams only" if kinds else "the container holds no stream at all"
        raise ImageLoadError("unsupported", f"no video stream ({held})")
    stream = container.streams.video[0]
    context = stream.codec_context
    width, height = int(context.width or 0), int(context.height or 0)
    if width <= 0 or height <= 0:
        raise ImageLoadError("corrupt", "the video stream declares no frame size")
    if width * height > MAX_PIXELS:
        raise ImageLoadError("too_large", f"{width}x{height} frames are more than {MAX_PIXELS // 1_000_000} MP")
    # Slice threads, not frame threads: a sample decodes a keyframe alone or a short run forward,
    # and frame threads must fill (and on each seek drain) a pipeline of several frames first;
    # measured on 1080p H.264, sampling took 0.78x the time of AUTO (tests/bench/video_throughput.py)
    stream.thread_type = "SLICE"
    context.options = dict(DECODER_OPTIONS)
    duration = _duration(container, stream)
    notes: list[str] = []
    keys = _keyframe_times(container, stream, deadline)
    picks = _choose_times(duration, keys, spacing, max_frames)
    decoder = _FrameDecoder(container, stream, min_side, deadline, keys)
    frames = decoder.take(picks, budget=GAP_DECODE_BUDGET * max(len(picks), 1))
    if decoder.timed_out:
        notes.append(f"sampled for {decoder.limit:.3g} s only (the time limit): {len(frames)} frames")
    if decoder.errors:
        notes.append(f"{decoder.errors} damaged part(s) skipped: {decoder.first_error}")
    if not frames:
        if decoder.timed_out:
            raise ImageLoadError("timeout", "no frame decoded within the time limit")
        if decoder.errors:
            raise ImageLoadError("corrupt", f"no frame could be decoded: {decoder.first_error}")
        raise ImageLoadError("truncated", "no frame of the video stream could be decoded")
    kept = [(t, image) for t, image, flat in frames if not flat]
    left_out = len(frames) - len(kept)
    if not kept:  # a black or flat video is still a video: keep what there is
        kept = [(t, image) for t, image, _ in frames]
        left_out = 0
    rotation = decoder.rotation
    upright_w, upright_h = (height, width) if rotation % 180 else (width, height)
    fps = float(stream.average_rate) if stream.average_rate else None
    bitrate = int(container.bit_rate) if container.bit_rate else None
    info = VideoInfo(upright_w, upright_h, _format_name(container), round(duration or frames[-1][0], 3),
                     round(fps, 3) if fps else None, context.name or "unknown", bitrate,
                     _creation_time(container, stream), tuple(notes))
    return VideoSample(info, [t for t, _ in kept], [image for _, image in kept], left_out)


def video_vector(frames: np.ndarray) -> np.ndarray:
    """A video's one embedding: the normalised mean of its frames' unit vectors (one hit per
    video in the images' index; what a whole-video query searches with)."""
    mean = np.asarray(frames, np.float32).mean(axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


def _duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _keyframe_times(container, stream, deadline) -> list[float]:
    """The keyframes' times, from the container's index where it has one (no read), else from one
    pass of demuxing (packets only, no decode), which stops at the deadline."""
    base = stream.time_base
    entries = getattr(stream, "index_entries", None)
    try:
        if entries and len(entries) > 1:
            # The index is in decode order (dts): with B-frames a keyframe shows a few frames later,
            # and a seek to its dts would land on the keyframe before it.
            stamps = [e.timestamp for e in entries]
            delay = max(0, (stream.start_time or 0) - min(stamps))
            return sorted(float((e.timestamp + delay) * base) for e in entries if e.is_keyframe)
    except Exception:  # noqa: BLE001 - an odd index is only a missed shortcut
        pass
    import av

    times: list[float] = []
    try:
        for count, packet in enumerate(container.demux(stream)):
            if packet.is_keyframe and packet.pts is not None:
                times.append(float(packet.pts * base))
            if count % 256 == 0 and time.monotonic() > deadline:
                break
    except (av.error.InvalidDataError, av.error.ExitError):
        pass  # the keyframes found so far; the sampling meets the damage or the clock again
    return times


def _choose_times(duration: float | None, keys: list[float], spacing: float,
                  max_frames: int) -> list[tuple[float, bool]]:
    """(time, is a keyframe) to sample: an even spread of at most max_frames over the duration,
    each served by the nearest keyframe within half a step, else decoded at its time."""
    if not duration or duration <= 0:
        return [(t, True) for t in keys[:max_frames]] or [(0.0, True)]
    step = max(spacing, duration / max_frames)
    count = max(1, min(max_frames, math.floor(duration / step)))
    targets = [(i + 0.5) * duration / count for i in range(count)]
    keys_sorted = np.asarray(sorted(keys), dtype=np.float64)
    picks: list[tuple[float, bool]] = []
    for target in targets:
        if len(keys_sorted):
            nearest = float(keys_sorted[np.abs(keys_sorted - target).argmin()])
            if abs(nearest - target) <= step / 2:
                if not picks or picks[-1][0] != nearest:
                    picks.append((nearest, True))
                continue
        picks.append((target, False))
    return picks


class _FrameDecoder:
    """Decodes the chosen frames: a keyframe by a seek and one decode; any other frame by decoding
    forward, from where the last one left off when no keyframe lies between, else from the keyframe
    before it. Once the budget of forward-decoded frames is spent, a gap is served by its nearest
    keyframe. A damaged part costs the frame sought there, not the video; the clock is read at
    every packet."""

    def __init__(self, container, stream, min_side, deadline, keys: list[float]):
        self.container, self.stream, self.min_side = container, stream, min_side
        self.deadline = deadline
        self.limit = max(0.0, deadline - time.monotonic())
        self.keys = np.asarray(sorted(keys), dtype=np.float64)
        self.timed_out = False
        self.rotation = 0
        self.errors, self.first_error = 0, ""
        self._position: float | None = None  # time of the last frame decoded forward

    def take(self, picks: list[tuple[float, bool]], budget: int) -> list[tuple[float, object, bool]]:
        import av

        frames: list[tuple[float, object, bool]] = []
        seen: set[int] = set()
        for target, is_key in picks:
            if self._late():
                break
            if not is_key and budget <= 0 and len(self.keys):
                target, is_key = float(self.keys[np.abs(self.keys - target).argmin()]), True
            try:
                found = self._keyframe(target) if is_key else self._forward_to(target, max(budget, 1))
            except av.error.ExitError:  # a read interrupted by the time limit
                self.timed_out = True
                break
            except (av.error.InvalidDataError, av.error.EOFError, av.error.PatchWelcomeError) as e:
                self.errors += 1
                self.first_error = self.first_error or ffmpeg_message(e)
                self._position = None  # the decoder's state is unknown: seek for the next frame
                if self.errors > MAX_DECODE_ERRORS:
                    break
                continue
            if found is None:
                continue
            frame, decoded = found
            budget -= 0 if is_key else decoded
            if frame.pts in seen:
                continue
            seen.add(frame.pts)
            frames.append(self._image(frame))
        frames.sort(key=lambda f: f[0])
        return frames

    def _late(self) -> bool:
        if time.monotonic() > self.deadline:
            self.timed_out = True
        return self.timed_out

    def _seek(self, target: float, skip: str) -> None:
        base = self.stream.time_base
        try:
            self.container.seek(int(target / base) if base else 0, stream=self.stream, backward=True,
                                any_frame=False)
        except Exception:  # noqa: BLE001 - an unseekable stream is read from where it is
            pass
        context = self.stream.codec_context
        context.flush_buffers()
        context.skip_frame = skip

    def _keyframe(self, target: float):
        self._seek(target, "NONKEY")
        self._position = None  # only keyframes were decoded: forward decoding must seek again
        for packet in self.container.demux(self.stream):
            for frame in packet.decode():
                return frame, 1
            if self._late():  # the index's keyframes may not be the decoder's: it skips them all
                break
        return None

    def _forward_to(self, target: float, budget: int):
        """The first frame at or after `target` and how many frames were decoded to reach it; the
        last frame decoded once `budget` frames are spent short of it."""
        between = len(self.keys) and self._position is not None and bool(
            ((self.keys > self._position) & (self.keys <= target)).any())
        if self._position is None or target <= self._position or between:
            # only the frames others refer to: a B-frame no frame needs is skipped, not decoded
            # (x264's default stream has about half of them), and the frame reached is at most
            # a few frames past the target
            self._seek(target, "NONREF")
        decoded, last = 0, None
        for packet in self.container.demux(self.stream):
            for frame in packet.decode():
                decoded += 1
                last = frame
                if frame.time is None or frame.time >= target - 1e-3 or decoded >= budget:
                    self._position = frame.time
                    return frame, decoded
            if self._late():
                break
        self._position = None
        return (last, decoded) if last is not None else None

    def _image(self, frame) -> tuple[float, object, bool]:
        """The frame as an upright RGB image at the size the model needs, and whether it is flat."""
        self.rotation = int(getattr(frame, "rotation", 0) or 0) % 360
        width, height = frame.width, frame.height
        factor = max(1, min(width, height) // self.min_side) if self.min_side else 1
        image = frame.to_image(width=max(1, width // factor), height=max(1, height // factor),
                               interpolation="AREA") if factor > 1 else frame.to_image()
        if self.rotation:
            image = image.rotate(self.rotation, expand=True)  # FFmpeg's display matrix, counter-clockwise
        luma = np.asarray(image.convert("L").reduce(4) if min(image.size) >= 64 else image.convert("L"),
                          dtype=np.float32)
        flat = float(luma.std()) < FLAT_LUMA_STD or float(luma.mean()) < DARK_LUMA_MEAN
        seconds = float(frame.time) if frame.time is not None else 0.0
        return round(seconds, 3), image, flat


def _format_name(container) -> str:
    name = (container.format.name or "video").split(",")[0]
    return {"mov": "MP4", "matroska": "MKV", "mpegts": "MPEG-TS"}.get(name, name.upper())


def _creation_time(container, stream) -> datetime | None:
    for metadata in (container.metadata, stream.metadata):
        value = (metadata or {}).get("creation_time")
        if value:
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).replace(tzinfo=None)
            except ValueError:
                continue
    return None

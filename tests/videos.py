"""Real video files for tests, written by PyAV with libx264 from generated scenes: each scene is
shown for a few seconds with a slow pan, so that frames differ within a shot and cut between shots."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image

from vitsearch.ui.samples import make_scene

__all__ = ["write_clip", "shot_frames", "scene_shots", "frame_at"]


def scene_shots(seeds, seconds: float = 3.0) -> list[tuple[Image.Image | None, float]]:
    """(scene, seconds) per shot; None is a black shot."""
    return [(None if seed is None else make_scene(seed, (480, 360)), seconds) for seed in seeds]


def shot_frames(shots, size=(320, 240), fps: int = 15):
    """The RGB frames of `shots` in order, each scene panned slowly across its width."""
    width, height = size
    for scene, seconds in shots:
        count = max(1, round(seconds * fps))
        for i in range(count):
            if scene is None:
                yield np.zeros((height, width, 3), np.uint8)
                continue
            span = scene.width - scene.width * 0.8
            left = span * i / max(count - 1, 1)
            crop = scene.crop((left, 0, left + scene.width * 0.8, scene.height)).resize(size, Image.Resampling.BILINEAR)
            yield np.asarray(crop)


def write_clip(path: Path, shots, *, size=(320, 240), fps: int = 15, crf: int = 20, gop: int | None = None,
               start: float = 0.0, end: float | None = None, codec: str = "libx264") -> Path:
    """Encode the frames of `shots` (between `start` and `end` seconds) into `path`; `gop` is the
    keyframe interval in frames (None: x264's default, with keyframes at cuts)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        options = {"preset": "veryfast", "crf": str(crf)}
        if gop:
            options["g"] = str(gop)
        stream.options = options
        for n, pixels in enumerate(shot_frames(shots, size, fps)):
            t = n / fps
            if t < start or (end is not None and t >= end):
                continue
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def frame_at(path: Path, seconds: float) -> Image.Image:
    """The frame shown at `seconds` of a video, decoded in full (an exported still)."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if frame.time is not None and frame.time >= seconds - 1e-3:
                return frame.to_image()
    raise ValueError(f"{path} is shorter than {seconds} s")

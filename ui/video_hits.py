"""How the page shows a video hit: its time in the caption, its facts in the metadata panel, and
the line under its matching frame shown large (the page serves frames, never the video file)."""

from __future__ import annotations

from pathlib import Path

from ..search.video_frames import format_time

__all__ = ["is_video", "at_time", "video_facts", "frame_note"]


def is_video(hit) -> bool:
    return hit.kind == "video"


def at_time(hit) -> str:
    """' @ 00:42.5' for a video hit that matched at a frame (as the CLI prints it), else ''."""
    return f" @ {format_time(hit.time)}" if is_video(hit) and hit.time is not None else ""


def video_facts(hit, measured: dict) -> dict:
    """The metadata panel's video lines: its length, the moment that matched, and the stream's
    facts from `measured` (the hit's describe() row; {} once the file left the index)."""
    if not is_video(hit):
        return {}
    duration = f"{format_time(hit.duration)} ({hit.duration:.1f} s)" if hit.duration is not None else None
    matched = format_time(hit.time) if hit.time is not None else "the whole video (a video query)"
    fps, bitrate = measured.get("fps"), measured.get("bitrate")
    return {"duration": duration, "matched at": matched, "frame rate": f"{fps:g} fps" if fps else None,
            "codec": measured.get("codec"), "bitrate": f"{bitrate / 1000:.0f} kbit/s" if bitrate else None}


def frame_note(hit) -> str:
    """Plain text under a video hit's frame: which moment it is, and how to watch it there."""
    name = Path(hit.path).name
    length = f" of {format_time(hit.duration)}" if hit.duration is not None else ""
    if hit.time is None:
        return f"{name}: a frame near the middle{length}. Open the file in a video player to watch it."
    return (f"{name} @ {format_time(hit.time)}{length}: the frame that matched best. "
            f"Open the file in a video player at {format_time(hit.time)} to watch it from there.")

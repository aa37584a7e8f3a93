"""A video file opened for sampling, or refused with its reason before any decode: a file that is
missing, empty, special (a FIFO) or cut short, or a format outside the video containers.

A cut file is told by its container's own sizes, read from a few headers: an MP4 or MOV box, a
Matroska segment or an AVI RIFF chunk that runs past the end of the file, or an MP4 without the
index ('moov' box) that a finished recording has. FFmpeg calls such a file "invalid data" or
says it has no video stream, so the sizes decide.
"""

from __future__ import annotations

import os
import stat
import struct

from ..errors import ImageLoadError, first_line

__all__ = ["open_video", "video_cut", "what_it_is", "ffmpeg_message", "CONTAINERS", "DECODER_OPTIONS",
           "MAX_PIXELS"]

MAX_PIXELS = 8192 * 4352  # 8K DCI: larger frames are refused, declared or decoded
# FFmpeg's demuxers of the video extensions (indexer.extensions; mov serves .mp4 .mov .m4v .3gp):
# any other format FFmpeg would recognise (an image, an HLS or concat playlist naming other files)
# is refused at open, and only local files are read.
CONTAINERS = {"mov": "MP4/MOV", "matroska": "MKV/WebM", "avi": "AVI", "mpegts": "MPEG-TS"}
_CONTAINER_OPTIONS = {"format_whitelist": ",".join(CONTAINERS), "protocol_whitelist": "file"}
# For every decoder FFmpeg opens, its own while probing included, and the sampler's: a frame
# larger than this is refused before its buffers are allocated (a 30 KB WebM whose VP8 frames
# say 16000x16000 took 2.2 GB to decode without it; an H.264 stream saying so, 0.7 GB to probe).
DECODER_OPTIONS = {"max_pixels": str(MAX_PIXELS)}
OPEN_TIME_LIMIT_S = 30.0  # one read of a local file: longer is stuck
MAX_BOXES = 100_000  # top-level boxes walked: a fragmented MP4 has two per fragment (moof, mdat)
# What a QuickTime or MP4 file may open with (older QuickTime files have no ftyp).
_ISO_FIRST = {b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip"}
# Other files met under a video's name: their signatures, to say what the file is instead.
_SIGNATURES = ((b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG", "a PNG image"), (b"GIF8", "a GIF image"),
               (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a ZIP archive"), (b"ID3", "an MP3 file"),
               (b"fLaC", "a FLAC file"), (b"OggS", "an Ogg file"))


def open_video(path: str, time_limit: float):
    """The PyAV container of the video at `path`, probed within the time limit (FFmpeg's reads
    are interrupted past it, as later reads are); ImageLoadError for what cannot be a video."""
    import av

    _check_file(path)
    limit = min(time_limit, OPEN_TIME_LIMIT_S)
    try:
        return av.open(path, options=DECODER_OPTIONS, container_options=_CONTAINER_OPTIONS,
                       timeout=(limit, limit))
    except av.error.ExitError as e:
        raise ImageLoadError("timeout", f"opening the video took over {limit:.0f} s") from e
    except (av.error.FileNotFoundError, av.error.PermissionError) as e:
        raise ImageLoadError("vanished" if isinstance(e, FileNotFoundError) else "unreadable",
                             e.strerror or ffmpeg_message(e)) from e
    except av.error.FFmpegError as e:
        # EINVAL: a format FFmpeg knows that CONTAINERS leaves out; else no format it knows
        known = isinstance(e, av.error.ArgumentError)
        what = what_it_is(path)
        detail = (f"not a video: {what}" if what else
                  f"not in a video container vitsearch reads ({', '.join(CONTAINERS.values())})" if known else
                  "not a video: FFmpeg finds no container it knows in it")
        raise ImageLoadError("unidentified", detail) from e


def ffmpeg_message(error: BaseException) -> str:
    """FFmpeg's message without the errno and the path PyAV puts in it."""
    message = first_line(error)
    if message.startswith("[Errno"):
        message = message.split("] ", 1)[-1]
    return message.split(": '", 1)[0]


def _check_file(path: str) -> None:
    """Refuse what needs no FFmpeg to refuse: a missing, empty, special or cut-short file."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):  # a FIFO or a device never ends
            raise ImageLoadError("unreadable", "not a regular file")
        if st.st_size == 0:
            raise ImageLoadError("empty", "the file is empty (0 bytes)")
        cut = video_cut(path)
    except OSError as e:
        raise ImageLoadError("vanished" if isinstance(e, FileNotFoundError) else "unreadable",
                             e.strerror or str(e)) from e
    if cut:
        raise ImageLoadError("truncated", f"the file is cut short: {cut}")


def video_cut(path: str) -> str | None:
    """How the video at `path` ends before what its container declares, or None when nothing says
    it was cut (an MPEG-TS stream declares no size: a cut one is read as far as it goes)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(16)
        if head[4:8] in _ISO_FIRST:
            return _iso_cut(f, size)
        if head[:4] == b"\x1a\x45\xdf\xa3":
            return _matroska_cut(f, size)
        if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
            end = 8 + struct.unpack_from("<I", head, 4)[0]
            return _beyond("RIFF 'AVI ' chunk", end, size)
    return None


def what_it_is(path: str) -> str | None:
    """What a file that is not a video is, from its first bytes ("a JPEG image"), if known."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    return next((name for magic, name in _SIGNATURES if head.startswith(magic)), None)


def _beyond(what: str, end: int, size: int) -> str | None:
    return f"its {what} needs {end - size} bytes more than the {size} present" if end > size else None


def _iso_cut(f, size: int) -> str | None:
    position, kinds = 0, set()
    for _ in range(MAX_BOXES):
        if position >= size:
            break
        f.seek(position)
        header = f.read(16)
        if len(header) < 8:
            return f"its last box header is cut short after {len(header)} bytes"
        length, kind = struct.unpack_from(">I4s", header)
        if not (kind.isascii() and kind.decode("ascii").isprintable()):
            return None  # not a box: whatever follows is FFmpeg's to judge
        header_size = 8
        if length == 1:
            if len(header) < 16:
                return f"its '{kind.decode()}' box header is cut short"
            (length,) = struct.unpack_from(">Q", header, 8)
            header_size = 16
        elif length == 0:  # "to the end of the file"
            length = size - position
        if length < header_size:
            return None
        cut = _beyond(f"'{kind.decode()}' box", position + length, size)
        if cut:
            return cut
        kinds.add(kind)
        position += length
    else:
        return None  # too many boxes to walk: no verdict
    if b"moov" not in kinds:
        return "it has no 'moov' box, the index a finished recording writes (at its end, unless moved first)"
    return None


def _matroska_cut(f, size: int) -> str | None:
    """The Segment's declared size against the file's (an unknown size, as a live recording
    writes, declares nothing)."""
    f.seek(4)
    header_size = _vint(f)
    if header_size is None:
        return None
    f.seek(4 + header_size[1] + header_size[0])
    if f.read(4) != b"\x18\x53\x80\x67":
        return None
    segment = _vint(f)
    if segment is None or segment[2]:
        return None
    return _beyond("Matroska segment", f.tell() + segment[0], size)


def _vint(f) -> tuple[int, int, bool] | None:
    """An EBML variable-size integer: (value, its length in bytes, whether it means 'unknown')."""
    first = f.read(1)
    if not first or first[0] == 0:
        return None
    length = 9 - first[0].bit_length()
    rest = f.read(length - 1)
    if len(rest) < length - 1:
        return None
    value = first[0] & (0xFF >> length)
    for byte in rest:
        value = value << 8 | byte
    return value, length, value == (1 << (7 * length)) - 1

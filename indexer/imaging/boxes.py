"""ISO base media file format boxes (HEIF, AVIF, the JPEG XL container), walked without decoding."""

from __future__ import annotations

import struct

__all__ = ["iso_boxes"]


def iso_boxes(data: bytes, start: int, end: int):
    """(type, payload start, box end) of the boxes laid end to end from `start` to `end`; a box
    whose header is cut short ends past `end`. Stops at a size too small to be a box."""
    position = start
    while position < end:
        if position + 8 > end:
            yield b"header", end, position + 8
            return
        size, kind = struct.unpack_from(">I4s", data, position)
        header = 8
        if size == 1:
            if position + 16 > end:
                yield kind, end, position + 16
                return
            (size,) = struct.unpack_from(">Q", data, position + 8)
            header = 16
        elif size == 0:  # "to the end of the file"
            size = end - position
        if size < header:
            return
        yield kind, position + header, position + size
        position += size

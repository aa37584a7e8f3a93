"""The size a JPEG XL file declares, read from its header: the JXL plugin decodes the whole
image as it opens the file, so a bomb must be refused before the plugin ever sees it."""

from __future__ import annotations

import struct

__all__ = ["looks_jxl", "jxl_size"]

_CODESTREAM = b"\xff\x0a"
_CONTAINER = b"\x00\x00\x00\x0cJXL \x0d\x0a\x87\x0a"
_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}


def looks_jxl(data: bytes) -> bool:
    return data.startswith((_CODESTREAM, _CONTAINER))


def jxl_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the SizeHeader, or None when the header cannot be found or read."""
    stream = _codestream(data)
    if stream is None or not stream.startswith(_CODESTREAM):
        return None
    bits = _Bits(stream[2:34])
    try:
        small = bits.read(1)
        height = (bits.read(5) + 1) * 8 if small else bits.u32() + 1
        ratio = bits.read(3)
        if ratio:
            numerator, denominator = _RATIOS[ratio]
            width = height * numerator // denominator
        else:
            width = (bits.read(5) + 1) * 8 if small else bits.u32() + 1
    except IndexError:
        return None
    return width, height


def _codestream(data: bytes) -> bytes | None:
    """The start of the codestream: the file itself, or the payload of its first jxlc/jxlp box."""
    if data.startswith(_CODESTREAM):
        return data
    position = 0
    while position + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, position)
        header = 8
        if size == 1 and position + 16 <= len(data):
            (size,) = struct.unpack_from(">Q", data, position + 8)
            header = 16
        if kind == b"jxlc":
            return data[position + header:]
        if kind == b"jxlp":
            return data[position + header + 4:]  # after the part index
        if size < header:
            return None
        position += size
    return None


class _Bits:
    """Bits least significant first, as JPEG XL writes them."""

    def __init__(self, data: bytes):
        self.value = int.from_bytes(data, "little")
        self.available = 8 * len(data)
        self.position = 0

    def read(self, count: int) -> int:
        if self.position + count > self.available:
            raise IndexError("header cut short")
        result = (self.value >> self.position) & ((1 << count) - 1)
        self.position += count
        return result

    def u32(self) -> int:
        return self.read((9, 13, 18, 30)[self.read(2)])

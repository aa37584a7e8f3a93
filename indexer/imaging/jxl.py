"""The size a JPEG XL file declares, read from its header: the JXL plugin decodes the whole
image as it opens the file, so a bomb must be refused before the plugin ever sees it. And whether
the file ends early: the plugin says "Generic Error" of a cut file and of a damaged one alike."""

from __future__ import annotations

import contextlib

from .boxes import iso_boxes

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
    try:
        return _size_header(_Bits(stream[2:34]))
    except IndexError:
        return None


def _size_header(bits: _Bits) -> tuple[int, int]:
    small = bits.read(1)
    height = (bits.read(5) + 1) * 8 if small else bits.u32() + 1
    ratio = bits.read(3)
    if ratio:
        numerator, denominator = _RATIOS[ratio]
        return height * numerator // denominator, height
    return (bits.read(5) + 1) * 8 if small else bits.u32() + 1, height


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
    """How a codestream ends before its last frame does, following its headers (ISO 18181-1:
    SizeHeader, ImageMetadata, then each frame's header and table of contents). An ICC profile,
    a preview or a permuted TOC: None, since the decoder's word stands."""
    try:
        end = _stream_end(stream)
    except _Cut:
        return f"its headers need more than the {len(stream)} bytes present"
    except _Unsupported:
        return None
    if end > len(stream):
        return f"its image data needs {end - len(stream)} bytes more than the {len(stream)} present"
    return None


_WINDOW = 1 << 16  # image or frame headers with the TOC of a 100 MP photo take a few KB
_MAX_FRAMES = 1000  # an animation longer than this is not followed


class _Unsupported(Exception):
    """A codestream feature this header reader does not follow."""


class _Cut(Exception):
    """The headers themselves run past the end of the stream."""


def _stream_end(stream: bytes) -> int:
    """The byte where the codestream's last frame ends, as its headers declare it (more than
    the length of the stream when a frame is missing)."""
    bits = _header_bits(stream, 2)
    with _cut_if(stream, 2):
        image = (*_size_header(bits), *_image_metadata(bits))
        if not bits.read(1):  # CustomTransformData not all default
            if image[3] and not bits.read(1):
                bits.read(16 * 16)  # opsin inverse matrix, biases
            mask = bits.read(3)
            bits.read(16 * (15 * (mask & 1) + 55 * (mask >> 1 & 1) + 210 * (mask >> 2 & 1)))
        bits.zero_pad()
    offset = 2 + bits.position // 8
    for _ in range(_MAX_FRAMES):
        if offset >= len(stream):
            return offset + 1  # a frame that is not the last, and nothing after it
        bits = _header_bits(stream, offset)
        with _cut_if(stream, offset):
            length, last = _frame(bits, *image)
        offset += length
        if last:
            return offset
    raise _Unsupported("too many frames")


def _header_bits(stream: bytes, offset: int) -> _Bits:
    return _Bits(stream[offset:offset + _WINDOW])


@contextlib.contextmanager
def _cut_if(stream: bytes, offset: int):
    """Headers read past their window: cut short if the stream ends there, else too long to follow."""
    try:
        yield
    except IndexError:
        raise (_Cut if offset + _WINDOW >= len(stream) else _Unsupported)("headers past the window") from None


def _image_metadata(bits: _Bits) -> tuple[int, bool, tuple[bool, bool]]:
    """Skip ImageMetadata; (number of extra channels, xyb_encoded, (animation, timecodes))."""
    if bits.read(1):  # all default
        return 0, True, (False, False)
    extra_fields, animation = bits.read(1), (False, False)
    if extra_fields:
        bits.read(3)  # orientation
        if bits.read(1):  # intrinsic size
            small = bits.read(1)
            bits.read(5) if small else bits.u32()
            if not bits.read(3):
                bits.read(5) if small else bits.u32()
        if bits.read(1):
            raise _Unsupported("a preview frame")
        if bits.read(1):  # animation: ticks, loops, timecodes
            bits.u32v((0, 100), (0, 1000), (10, 1), (30, 1))
            bits.u32v((0, 1), (0, 1001), (8, 1), (10, 1))
            bits.u32v((0, 0), (3, 0), (16, 0), (32, 0))
            animation = (True, bool(bits.read(1)))
    _bit_depth(bits)
    bits.read(1)  # modular_16_bit_buffer_sufficient
    extra_channels = bits.u32v((0, 0), (0, 1), (4, 2), (12, 1))
    for _ in range(extra_channels):
        if not bits.read(1):
            kind = bits.enum()
            _bit_depth(bits)
            bits.u32v((0, 0), (0, 3), (0, 4), (3, 1))  # dim_shift
            bits.read(8 * bits.u32v((0, 0), (4, 0), (5, 16), (10, 48)))  # name
            bits.read({0: 1, 2: 64}.get(kind, 0))  # alpha_associated; spot colour
            if kind == 5:
                bits.u32v((0, 1), (2, 0), (4, 3), (8, 19))
    xyb = bool(bits.read(1))
    if not bits.read(1):  # colour encoding
        if bits.read(1):
            raise _Unsupported("an ICC profile")
        space = bits.enum()
        if space != 2:  # not XYB
            if bits.enum() == 2:
                bits.customxy()
            if space != 1 and bits.enum() == 2:  # primaries, unless grey
                bits.customxy(), bits.customxy(), bits.customxy()
            bits.read(24) if bits.read(1) else bits.enum()  # gamma or transfer function
            bits.enum()  # rendering intent
    if extra_fields and not bits.read(1):  # tone mapping
        bits.read(16 + 16 + 1 + 16)
    bits.extensions()
    return extra_channels, xyb, animation


def _bit_depth(bits: _Bits) -> None:
    if bits.read(1):  # floating point
        bits.u32v((0, 32), (0, 16), (0, 24), (6, 1))
        bits.read(4)
    else:
        bits.u32v((0, 8), (0, 10), (0, 12), (6, 1))


_REGULAR, _DC, _REFERENCE, _SKIP_PROGRESSIVE = range(4)


def _frame(bits: _Bits, width: int, height: int, extra_channels: int, xyb: bool,
           animation: tuple[bool, bool]) -> tuple[int, bool]:
    """Read a FrameHeader and its TOC (libjxl's frame_header.cc): (bytes the frame takes, last)."""
    kind, modular, upsampling, shift, passes, last = _REGULAR, 0, 1, 1, 1, True
    if not bits.read(1):  # not all default
        kind, modular, flags = bits.read(2), bits.read(1), bits.u64()
        ycbcr = 0 if xyb else bits.read(1)
        if not flags & 32:  # no DC frame
            if ycbcr:
                bits.read(6)
            upsampling = (1, 2, 4, 8)[bits.read(2)]
            bits.read(2 * extra_channels)
        if modular:
            shift = bits.read(2)
        elif xyb:
            bits.read(6)  # x and b quantisation matrix scales
        if kind != _REFERENCE:
            passes = bits.u32v((0, 1), (0, 2), (0, 3), (3, 4))
            if passes != 1:
                downsample = bits.u32v((0, 0), (0, 1), (0, 2), (1, 3))
                bits.read(2 * (passes - 1) + 2 * downsample)
                for _ in range(downsample):
                    bits.u32v((0, 0), (0, 1), (0, 2), (3, 0))
        partial = False
        if kind == _DC:
            level = bits.u32v((0, 1), (0, 2), (0, 3), (0, 4))
            width, height = -(-width >> 3 * level), -(-height >> 3 * level)
        elif bits.read(1):  # custom size or origin
            sizes = ((8, 0), (11, 256), (14, 2304), (30, 18688))
            x0 = y0 = 0
            if kind in (_REGULAR, _SKIP_PROGRESSIVE):
                x0, y0 = (_signed(bits.u32v(*sizes)) for _ in range(2))
            frame_width, frame_height = bits.u32v(*sizes), bits.u32v(*sizes)
            if kind in (_REGULAR, _SKIP_PROGRESSIVE):
                partial = x0 > 0 or y0 > 0 or frame_width + x0 < width or frame_height + y0 < height
            width, height = frame_width, frame_height
        duration, mode = 0, 0
        if kind in (_REGULAR, _SKIP_PROGRESSIVE):
            for channel in range(1 + extra_channels):  # blending, for the image and each extra channel
                blend = bits.u32v((0, 0), (0, 1), (0, 2), (2, 3))
                mode = blend if channel == 0 else mode
                if extra_channels and blend in (2, 4):
                    bits.u32v((0, 0), (0, 1), (0, 2), (3, 3))
                if (extra_channels and blend in (2, 4)) or blend == 5:
                    bits.read(1)
                if blend != 0 or partial:
                    bits.read(2)
            if animation[0]:
                duration = bits.u32v((0, 0), (0, 1), (8, 0), (32, 0))
                bits.read(32 if animation[1] else 0)
            last = bool(bits.read(1))
        last = last and kind == _REGULAR
        reference = bits.read(2) if kind != _DC and not last else 0
        referenced = not last and kind != _DC and (duration == 0 or reference != 0)
        if kind == _REFERENCE or (referenced and mode == 0 and not partial and kind != _DC):
            bits.read(1)  # save before the colour transform
        bits.read(8 * bits.u32v((0, 0), (4, 0), (5, 16), (10, 48)))  # name
        _restoration_filter(bits, modular=bool(modular))
        bits.extensions()
    group = 128 << shift
    width, height = -(-width // upsampling), -(-height // upsampling)
    groups = -(-width // group) * -(-height // group)
    dc_groups = -(-width // (8 * group)) * -(-height // (8 * group))
    entries = 1 if groups == 1 and passes == 1 else 2 + dc_groups + groups * passes
    if bits.read(1):
        raise _Unsupported("a permuted table of contents")
    bits.zero_pad()
    sizes = sum(bits.u32v((10, 0), (14, 1024), (22, 17408), (30, 4211712)) for _ in range(entries))
    bits.zero_pad()
    return bits.position // 8 + sizes, last


def _signed(value: int) -> int:
    return value >> 1 if value & 1 == 0 else -(value + 1 >> 1)


def _restoration_filter(bits: _Bits, *, modular: bool) -> None:
    if bits.read(1):  # all default
        return
    if bits.read(1) and bits.read(1):  # gaborish, custom weights
        bits.read(6 * 16)
    if bits.read(2):  # EPF iterations
        if not modular and bits.read(1):
            bits.read(8 * 16)  # sharpness table
        if bits.read(1):
            bits.read(3 * 16 + 32)  # channel scales, reserved
        if bits.read(1):
            bits.read((0 if modular else 16) + 3 * 16)  # sigma: quantisation multiplier, scales
        if modular:
            bits.read(16)
    bits.extensions()


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

    def u32v(self, *choices: tuple[int, int]) -> int:
        """The spec's U32: two selector bits pick (bits to read, offset to add)."""
        count, offset = choices[self.read(2)]
        return self.read(count) + offset

    def u64(self) -> int:
        selector = self.read(2)
        if selector == 0:
            return 0
        if selector == 1:
            return 1 + self.read(4)
        if selector == 2:
            return 17 + self.read(8)
        value, shift = self.read(12), 12
        while self.read(1):
            if shift == 60:
                return value | self.read(4) << shift
            value |= self.read(8) << shift
            shift += 8
        return value

    def enum(self) -> int:
        return self.u32v((0, 0), (0, 1), (4, 2), (6, 18))

    def customxy(self) -> None:
        for _ in range(2):
            self.u32v((19, 0), (19, 524288), (20, 1048576), (21, 2097152))

    def extensions(self) -> None:
        """An Extensions field and the bits of the extensions it announces, skipped."""
        present = self.u64()
        skip = sum(self.u64() for bit in range(64) if present >> bit & 1)
        self.position += skip
        if self.position > self.available:
            raise IndexError("extensions run past the headers")

    def zero_pad(self) -> None:
        self.position = -(-self.position // 8) * 8
        if self.position > self.available:
            raise IndexError("header cut short")

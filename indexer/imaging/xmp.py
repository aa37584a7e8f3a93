"""The photographer's own records in XMP (rating, pick or reject, colour label, keywords): read from
a packet embedded in an image or from a sidecar, and written to a sidecar, through exiv2
(pyexiv2's wheels bundle it) rather than a hand-written RDF parser.

Untrusted input meets exiv2 only as one bounded packet: a packet is found by its `x:xmpmeta`
wrapper (XMP's own packet-scanning rule, so no image container is parsed here), refused when
larger than MAX_PACKET_BYTES or when it declares a DTD or entities (XMP forbids them; they are how
entity-expansion bombs work) or when it binds a standard prefix to a foreign namespace (exiv2
would take that prefix over for the whole process, sending later reads and writes astray).
Whatever is refused becomes a note on the image, never a failed run.
"""

from __future__ import annotations

import os
import re
import stat
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

__all__ = ["PhotoRecords", "XmpError", "MAX_PACKET_BYTES", "embedded_packet", "parse_packet", "records_of", "layer_of",
           "read_packet", "merge_records", "read_sidecar", "prepare_sidecar", "EMPTY_PACKET", "PICKED", "REJECTED"]

MAX_PACKET_BYTES = 4 << 20  # darktable and Lightroom sidecars with long edit histories stay far below
PICKED, REJECTED = "picked", "rejected"
EMPTY_PACKET = (b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
                b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
                b'</rdf:RDF></x:xmpmeta>\n<?xpacket end="w"?>')

_OPEN, _CLOSE = b"<x:xmpmeta", b"</x:xmpmeta>"
_DTD = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)
# The namespaces whose properties are read, by the prefix exiv2 reports them under.
_NAMESPACES = {"xmp": "http://ns.adobe.com/xap/1.0/", "dc": "http://purl.org/dc/elements/1.1/",
               "lr": "http://ns.adobe.com/lightroom/1.0/", "digiKam": "http://www.digikam.org/ns/1.0/",
               "darktable": "http://darktable.sf.net/", "xmpDM": "http://ns.adobe.com/xmp/1.0/DynamicMedia/"}
_DECLARATION = re.compile(rb'xmlns:(\w+)\s*=\s*["\']([^"\']*)["\']')
# digiKam's colour label numbers and darktable's, as the names Lightroom writes in xmp:Label.
_DIGIKAM_COLOURS = {1: "Red", 2: "Orange", 3: "Yellow", 4: "Green", 5: "Blue", 6: "Magenta", 7: "Gray",
                    8: "Black", 9: "White"}
_DARKTABLE_COLOURS = {0: "Red", 1: "Yellow", 2: "Green", 3: "Blue", 4: "Purple"}
# exiv2's XMP toolkit is initialised once per process and is not safe for concurrent parses.
_EXIV2 = threading.Lock()


class XmpError(Exception):
    """A packet or sidecar that cannot be used; the message is the note recorded for the image."""


@dataclass(frozen=True)
class PhotoRecords:
    """What a photo manager recorded about one image; None or () where nothing says."""

    rating: int | None = None  # -1 (rejected) .. 5
    pick: str | None = None  # PICKED, REJECTED or None
    color_label: str | None = None
    keywords: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=(), compare=False)  # what could not be read, and why


def embedded_packet(data: bytes) -> bytes | None:
    """The first complete XMP packet in an image file's bytes (None when it holds none). Raises
    XmpError for one too large to read."""
    start = data.find(_OPEN, 0, _search_end(data))
    if start < 0:
        return None
    end = data.find(_CLOSE, start)
    if end < 0:
        raise XmpError("embedded XMP is cut short (no closing x:xmpmeta): not read")
    end += len(_CLOSE)
    if end - start > MAX_PACKET_BYTES:
        raise XmpError(f"embedded XMP is {end - start:,} bytes, over {MAX_PACKET_BYTES:,}: not read")
    return data[start:end]


def _search_end(data: bytes) -> int:
    """Where a packet can start: in a JPEG only its header segments (APP1 holds XMP), so that a
    file without XMP costs a walk over a few segments, not a scan of its compressed data."""
    if data[:2] != b"\xff\xd8":
        return len(data)
    offset = 2
    while offset + 4 <= len(data) and data[offset] == 0xFF:
        marker = data[offset + 1]
        if marker == 0xDA:  # start of scan: the header is over
            return offset
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        offset += 2 + int.from_bytes(data[offset + 2:offset + 4], "big")
    return len(data)  # not laid out as expected: search it all


def read_sidecar(path: str) -> bytes:
    """A sidecar's bytes, bounded; XmpError when too large or unreadable."""
    # No link followed and nothing but a plain file read: a FIFO or device put in a sidecar's
    # place after the scan would otherwise block or never end.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise XmpError(f"sidecar {os.path.basename(path)} unreadable: {e.strerror or e}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise XmpError(f"sidecar {os.path.basename(path)} is not a plain file: not read")
        with os.fdopen(fd, "rb") as f:
            fd = -1
            data = f.read(MAX_PACKET_BYTES + 1)
    except OSError as e:
        raise XmpError(f"sidecar {os.path.basename(path)} unreadable: {e.strerror or e}") from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > MAX_PACKET_BYTES:
        raise XmpError(f"sidecar {os.path.basename(path)} is over {MAX_PACKET_BYTES:,} bytes: not read")
    return data


def parse_packet(packet: bytes) -> dict[str, object]:
    """exiv2's reading of one packet: {'Xmp.xmp.Rating': '5', 'Xmp.dc.subject': [...], ...}."""
    if len(packet) > MAX_PACKET_BYTES:
        raise XmpError(f"XMP of {len(packet):,} bytes, over {MAX_PACKET_BYTES:,}: not read")
    if _DTD.search(packet):
        raise XmpError("XMP declares a DTD or entities (XMP allows none): not read")
    if _OPEN not in packet and b"<rdf:RDF" not in packet:
        raise XmpError("not an XMP packet (no x:xmpmeta or rdf:RDF): not read")
    foreign = sorted(_foreign_prefixes(packet))
    if foreign:  # exiv2 would take the prefix over for the whole process: later writes would go astray
        raise XmpError(f"{', '.join(p + ':' for p in foreign)} bound to a foreign namespace: not read")
    import pyexiv2

    with _EXIV2:
        # Level 3: exiv2's errors come back as exceptions (and nothing goes to stderr); muted (4),
        # a packet that is not well-formed read as an empty one, in silence.
        pyexiv2.set_log_level(3)
        try:
            data = pyexiv2.ImageData(packet)
            try:
                values = data.read_xmp()
            finally:
                data.close()
        except (RuntimeError, ValueError, UnicodeDecodeError) as e:
            raise XmpError(f"XMP is not well-formed ({str(e)[:120]}): not read") from None
    return values


def records_of(values: dict[str, object]) -> PhotoRecords:
    """The records one packet says (see PhotoRecords); values out of range are notes, not records."""
    return merge_records([layer_of(values)])


def layer_of(values: dict[str, object]) -> PhotoRecords:
    """What one packet says, its pick only as a flag says it (a -1 rating is a reject too, but as
    a rating: a later layer's own rating overrides it, see merge_records)."""
    notes: list[str] = []
    rating = _rating(values.get("Xmp.xmp.Rating"), notes)
    pick = None
    digikam_pick = _integer(values.get("Xmp.digiKam.PickLabel"))
    if digikam_pick == 1:
        pick = REJECTED
    elif digikam_pick == 3 or str(values.get("Xmp.xmpDM.good", "")).lower() == "true":
        pick = PICKED
    return PhotoRecords(rating, pick, _colour(values), _keywords(values), tuple(notes))


def read_packet(packet: bytes) -> PhotoRecords:
    """The records one packet says; one that cannot be read is a note saying why."""
    try:
        return records_of(parse_packet(packet))
    except XmpError as e:
        return PhotoRecords(notes=(str(e),))


def merge_records(layers: Iterable[PhotoRecords]) -> PhotoRecords:
    """Embedded XMP first, then the sidecars from the least to the most specific: a later layer
    wins each field it says something about (as Lightroom and darktable read sidecars)."""
    merged = PhotoRecords()
    for layer in layers:
        merged = PhotoRecords(
            layer.rating if layer.rating is not None else merged.rating,
            layer.pick if layer.pick is not None else merged.pick,
            layer.color_label if layer.color_label is not None else merged.color_label,
            layer.keywords or merged.keywords,
            merged.notes + layer.notes)
    if merged.rating == -1 and merged.pick is None:  # Lightroom, darktable and Bridge reject by rating
        merged = replace(merged, pick=REJECTED)
    return merged


def prepare_sidecar(path: str, *, rating: int | None = None, reject: bool = False,
                    add_keywords: Iterable[str] = ()) -> tuple[str | None, bytes, bool]:
    """The sidecar at `path` (created when absent; never an image file) with these records, written
    to a hidden file beside it, fsynced and checked by reading it back: (that file, its bytes,
    whether the sidecar is new). The caller renames it into place (indexer.sidecar_marks). None
    for the file when the sidecar already says all of it. Raises XmpError (nothing written) when
    the existing sidecar cannot be read or the result does not read back."""
    import pyexiv2

    existing = read_sidecar(path) if os.path.lexists(path) else None
    values = parse_packet(existing) if existing is not None else {}
    changes = _changes(values, rating, reject, [k for k in add_keywords if k])
    if not changes and existing is not None:
        return None, existing, False
    folder, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(folder, f".{name}.vitsearch-tmp")
    try:
        with open(temporary, "wb") as f:
            f.write(existing if existing is not None else EMPTY_PACKET)
        with _EXIV2:
            image = pyexiv2.Image(temporary)
            try:
                image.modify_xmp(changes)
            finally:
                image.close()
        with open(temporary, "rb") as f:
            written = f.read()
            os.fsync(f.fileno())
        _check_written(written, changes)
    except (RuntimeError, OSError, XmpError) as e:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise XmpError(f"could not prepare sidecar {path}: {e}") from None
    return temporary, written, existing is None


def _changes(values: dict, rating: int | None, reject: bool, keywords: list[str]) -> dict[str, object]:
    changes: dict[str, object] = {}
    if reject:
        if str(values.get("Xmp.xmp.Rating")) != "-1":
            changes["Xmp.xmp.Rating"] = "-1"
        if str(values.get("Xmp.digiKam.PickLabel")) != "1":
            changes["Xmp.digiKam.PickLabel"] = "1"
    elif rating is not None and _rating(values.get("Xmp.xmp.Rating"), []) != rating:
        changes["Xmp.xmp.Rating"] = str(int(rating))
    for key in ("Xmp.dc.subject", "Xmp.lr.hierarchicalSubject"):
        present = _as_list(values.get(key))
        new = [k for k in keywords if k not in present]
        if new:
            changes[key] = present + new
    return changes


def _check_written(written: bytes, changes: dict[str, object]) -> None:
    values = parse_packet(written)
    for key, wanted in changes.items():
        got = values.get(key)
        if (_as_list(got) != list(wanted)) if isinstance(wanted, list) else str(got) != wanted:
            raise XmpError(f"the sidecar read back without {key} = {wanted!r}: not written")


def _foreign_prefixes(packet: bytes) -> set[str]:
    found = set()
    for prefix, uri in _DECLARATION.findall(packet):
        name = prefix.decode("ascii", "replace")
        if name in _NAMESPACES and uri.decode("utf-8", "replace") != _NAMESPACES[name]:
            found.add(name)
    return found


def _rating(value, notes: list[str]) -> int | None:
    if value is None:
        return None
    try:
        rating = round(float(str(value)))
    except (ValueError, OverflowError):  # 'abc', 'nan'; 'inf', '1e400'
        notes.append(f"xmp:Rating {str(value)[:40]!r} is not a number: ignored")
        return None
    if not -1 <= rating <= 5:
        notes.append(f"xmp:Rating {rating} is outside -1..5: ignored")
        return None
    return rating


def _integer(value) -> int | None:
    try:
        return int(str(value)) if value is not None else None
    except ValueError:
        return None


def _colour(values: dict) -> str | None:
    label = values.get("Xmp.xmp.Label")
    if isinstance(label, str) and label.strip():
        return label.strip()[:100]
    digikam = _integer(values.get("Xmp.digiKam.ColorLabel"))
    if digikam in _DIGIKAM_COLOURS:
        return _DIGIKAM_COLOURS[digikam]
    for number in _as_list(values.get("Xmp.darktable.colorlabels")):
        if _integer(number) in _DARKTABLE_COLOURS:
            return _DARKTABLE_COLOURS[_integer(number)]
    return None


def _keywords(values: dict) -> tuple[str, ...]:
    """dc:subject (where Lightroom and darktable put each keyword's leaf), else the leaves of
    Lightroom's (a|b|c) and digiKam's (a/b/c) hierarchies."""
    found = list(_as_list(values.get("Xmp.dc.subject")))
    if not found:
        found += [k.rsplit("|", 1)[-1] for k in _as_list(values.get("Xmp.lr.hierarchicalSubject"))]
        found += [k.rsplit("/", 1)[-1] for k in _as_list(values.get("Xmp.digiKam.TagsList"))]
    seen, keywords = set(), []
    for keyword in (k.strip()[:200] for k in found):
        if keyword and keyword not in seen:
            seen.add(keyword)
            keywords.append(keyword)
    return tuple(keywords[:500])


def _as_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)] if str(value) else []

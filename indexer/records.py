"""The photographer's records of each image (rating, pick, colour label, keywords: see
indexer.imaging.xmp) and the files that belong to it (indexer.store.companions), kept current.

A run reads them from the bytes it already holds of each file it reads; refresh_records then reads
those of images the run left alone whose sidecars changed (or that were indexed before records
existed), without the model. What a row's records were read from is its `records_key`: the
image's size and mtime and each companion's name, size and mtime.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable

from .extensions import has_video_extension
from .imaging.images import read_image_bytes
from .imaging.xmp import (
    PhotoRecords,
    XmpError,
    embedded_packet,
    layer_of,
    merge_records,
    parse_packet,
    read_sidecar,
)
from .report import Progress
from .scan import ScannedFile
from .store.companions import RECORDS_VERSION, XMP_EXTENSION
from .store.companions import records_key as companion_records_key
from .store.store import Store, encode_path

__all__ = ["records_key", "read_records", "refresh_records", "records_stale", "read_stale_records"]

CHUNK = 256  # rows per transaction of a refresh


def records_key(file: ScannedFile) -> str:
    """companions.records_key of a scanned image. Every sync compares it for every unchanged image:
    for one without companions (most) it is made directly, at a third of the cost (the same key:
    tests/indexer/test_scope.py holds them equal)."""
    if not file.companions:
        return hashlib.blake2b(f"{RECORDS_VERSION}\0{file.size}\0{file.mtime_ns}".encode(), digest_size=12).hexdigest()
    return companion_records_key(file.size, file.mtime_ns, file.companions)


def read_records(file: ScannedFile, data: bytes | None) -> dict:
    """The record columns of one image from its bytes (`data`; None: read them) and its sidecars."""
    layers: list[PhotoRecords] = []
    try:
        if data is None:
            data = read_image_bytes(file.path)
        packet = embedded_packet(data)
        if packet is not None:
            layers.append(layer_of(parse_packet(packet)))
    except XmpError as e:
        layers.append(PhotoRecords(notes=(f"embedded XMP: {e}",)))
    except Exception as e:  # noqa: BLE001 - an unreadable image is the run's failure, not the records'
        layers.append(PhotoRecords(notes=(f"image unreadable for its XMP: {type(e).__name__}",)))
    folder = os.path.dirname(file.path)
    for name in _sidecars(os.path.basename(file.path), [n for n, _, _ in file.companions]):
        try:
            layers.append(layer_of(parse_packet(read_sidecar(os.path.join(folder, name)))))
        except XmpError as e:
            layers.append(PhotoRecords(notes=(f"sidecar {name}: {e}",)))
    merged = merge_records(layers)
    return {
        "rating": merged.rating, "pick": merged.pick, "color_label": merged.color_label,
        "keywords": list(merged.keywords) or None,
        "companion_files": [encode_path(os.path.join(folder, n))[0] for n, _, _ in file.companions] or None,
        "records_note": "; ".join(merged.notes)[:1000] or None,
        "records_key": records_key(file),
    }


def refresh_records(store: Store, scanned: Iterable[ScannedFile], progress: Progress | None = None,
                    notes: list[tuple[str, str]] | None = None) -> int:
    """Read the records of live images whose key differs from what is on disk now (a sidecar
    added, edited or removed; a store from before records); returns how many were read. What
    could not be read is appended to `notes` as (path, why). (build_index has its plan find
    them: indexer.plan's stale_records.)"""
    with store.connect() as con:
        found = con.execute("SELECT id, path, records_key FROM images WHERE status = 'ok'").fetchnumpy()
    ids, keys = found["id"].tolist(), found["records_key"].tolist()
    known = dict(zip(found["path"].tolist(), zip(ids, keys, strict=True), strict=True))
    stale = []
    for file in scanned:
        row = known.get(encode_path(file.path)[0])
        if row is not None and records_stale(row[1], file):
            stale.append((row[0], file))
    return read_stale_records(store, stale, progress, notes)


def records_stale(stored_key: str | None, file: ScannedFile) -> bool:
    """Whether a live row's records, read from what `stored_key` says, are stale for the image
    as scanned now (a video's XMP is not read yet: docs/videos.md)."""
    return stored_key != records_key(file) and not has_video_extension(file.path)


def read_stale_records(store: Store, stale: list[tuple[int, ScannedFile]], progress: Progress | None = None,
                       notes: list[tuple[str, str]] | None = None) -> int:
    """Read the records of these (row id, file) again and write them, CHUNK rows a transaction;
    returns how many."""
    for start in range(0, len(stale), CHUNK):
        chunk = stale[start:start + CHUNK]
        rows = [{"id": row_id, **read_records(file, None)} for row_id, file in chunk]
        if notes is not None:
            notes += [(file.path, row["records_note"]) for (_, file), row in zip(chunk, rows, strict=True)
                      if row["records_note"]]
        with store.transaction() as tx:
            tx.set_records(rows)
        if progress:
            progress("records", start + len(chunk), len(stale))
    return len(stale)


def _sidecars(image_name: str, companions: list[str]) -> list[str]:
    """The XMP sidecars among an image's companions, least specific first: `IMG.xmp` (Lightroom,
    shared by a RAW+JPEG pair), then `IMG.CR2.xmp` (darktable, digiKam), which wins."""
    xmp = [n for n in companions if n.lower().endswith(XMP_EXTENSION)]
    return sorted(xmp, key=lambda n: (n.lower() == image_name.lower() + XMP_EXTENSION, n))

"""Marking duplicates instead of moving them: a cleanup's decisions written into XMP sidecars
(indexer.imaging.xmp), where Lightroom, darktable and digiKam show and filter them, undoable byte
for byte. Nothing is ever written into an image file.

Order, each step safe to be interrupted: every new sidecar is prepared beside its target (hidden,
checked by reading it back) -> the manifest lists each sidecar with its hash before and after,
and a copy of each original goes into the quarantine folder (all fsynced) -> the prepared files
are renamed into place. An undo puts back every sidecar that still holds what was written (a
sidecar edited since is the user's and stays) and removes the ones it created."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import ConfigError
from .faults import fault_point
from .imaging.xmp import XmpError, prepare_sidecar
from .records import refresh_records
from .scan import scan_files
from .store.companions import XMP_EXTENSION, sole_companions
from .store.lock import WriterLock
from .store.quarantine_moves import mirrored_path, quarantine_dir
from .store.store import open_store

__all__ = ["SidecarMark", "SidecarWrite", "MarkReport", "mark_sidecars", "undo_marks", "sidecars_for",
           "MARKS_GLOB", "DUPLICATE_KEYWORD"]

MARKS_GLOB = "marks-*.json"
DUPLICATE_KEYWORD = "vitsearch|duplicate of|{keeper}"  # Lightroom's hierarchy separator: vitsearch > duplicate of
WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class SidecarMark:
    """What to record for one image: a reject with a keyword naming its keeper, or (a keeper) the
    group's best rating and keywords."""

    image: str  # the image file's name on disk
    reject: bool = False
    rating: int | None = None
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class SidecarWrite:
    sidecar: str
    image: str
    created: bool
    before: str | None  # sha256 of the original (None: created)
    after: str  # sha256 of what was written
    backup: str | None  # the original's copy in the quarantine folder


@dataclass
class MarkReport:
    manifest: Path | None
    written: list[SidecarWrite] = field(default_factory=list)  # for an undo: the sidecars put back
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)


def sidecars_for(image: str) -> list[str]:
    """The sidecars a mark of `image` goes into: its own existing XMP sidecars (`IMG.CR2.xmp`, or
    `IMG.xmp` when no other file shares it), else a new `IMG.CR2.xmp` (darktable's and digiKam's
    name; unambiguous beside a RAW+JPEG pair)."""
    own = [c for c in sole_companions(image) if c.lower().endswith(XMP_EXTENSION)]
    return own or [image + XMP_EXTENSION]


def mark_sidecars(store_dir, marks: list[SidecarMark], *, folder: Path | None = None, with_apply: Path | None = None,
                  wait: float = WAIT_SECONDS) -> MarkReport:
    """Write `marks` into the images' sidecars, with a manifest for undo_marks. `with_apply`: the
    quarantine manifest of the same cleanup, whose undo then undoes these marks too."""
    store = open_store(store_dir, read_only=False)
    store.require()
    folder = Path(folder) if folder else quarantine_dir(store.dir)
    report = MarkReport(None)
    with WriterLock(store.dir / "writer.lock", wait=wait):
        stamp = (with_apply.stem.removeprefix("manifest-") if with_apply
                 else f"{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**9:09d}")
        manifest = folder / f"marks-{stamp}.json"
        prepared = []
        for mark in marks:
            for sidecar in sidecars_for(mark.image):
                try:
                    temporary, written, created = prepare_sidecar(
                        sidecar, rating=mark.rating, reject=mark.reject, add_keywords=mark.keywords)
                except XmpError as e:
                    report.skipped.append((sidecar, str(e)))
                    continue
                if temporary is None:
                    continue  # it already says all of this
                prepared.append((temporary, _entry(sidecar, mark.image, created, written, folder, manifest)))
        if not prepared:
            return report
        folder.mkdir(parents=True, exist_ok=True)
        for _, entry in prepared:
            if entry.backup:
                _copy_synced(entry.sidecar, entry.backup)
        _write_manifest(manifest, [e for _, e in prepared], "writing")
        for temporary, entry in prepared:
            fault_point("sidecar_install")
            try:
                _install(temporary, entry)
                report.written.append(entry)
            except OSError as e:
                report.skipped.append((entry.sidecar, f"could not write: {e.strerror or e}"))
        _write_manifest(manifest, report.written, "written")
        report.manifest = manifest
        _refresh(store, report.written)
    return report


def undo_marks(store_dir, manifest: Path, *, wait: float = WAIT_SECONDS) -> MarkReport:
    """Put back every sidecar of `manifest` that still holds what was written (removing those it
    created); a sidecar changed since is left as it is and said."""
    store = open_store(store_dir, read_only=False)
    store.require()
    entries = read_marks(manifest)
    report = MarkReport(manifest)
    with WriterLock(store.dir / "writer.lock", wait=wait):
        for entry in entries:
            why = _restore(entry)
            if why:
                report.skipped.append((entry.sidecar, why))
            else:
                report.written.append(entry)
        _refresh(store, report.written)
        left = [e for e in entries if e not in report.written]
        if left:
            _write_manifest(manifest, left, "written")
        else:
            manifest.rename(manifest.with_suffix(".undone"))
            shutil.rmtree(manifest.with_suffix(""), ignore_errors=True)  # the originals' copies
    return report


def read_marks(manifest: Path) -> list[SidecarWrite]:
    try:
        data = json.loads(Path(manifest).read_text())
        return [SidecarWrite(**e) for e in data["sidecars"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{manifest} is not a vitsearch marks manifest ({type(e).__name__})") from None


# ---- internals ----

def _refresh(store, written: list[SidecarWrite]) -> None:
    """The marked images' rows say what their sidecars now say: search, --where and the next plan
    see the marks without waiting for an index run."""
    refresh_records(store, scan_files(sorted({w.image for w in written})))


def _entry(sidecar: str, image: str, created: bool, written: bytes, folder: Path, manifest: Path) -> SidecarWrite:
    before = None if created else _digest(sidecar)
    backup = None if created else os.path.join(folder, manifest.stem, mirrored_path(sidecar))
    return SidecarWrite(sidecar, image, created, before, hashlib.sha256(written).hexdigest(), backup)


def _install(temporary: str, entry: SidecarWrite) -> None:
    if entry.created:
        os.link(temporary, entry.sidecar)  # a file that appeared meanwhile is never replaced
        os.unlink(temporary)
    else:
        if _digest(entry.sidecar) != entry.before:
            os.unlink(temporary)
            raise OSError(0, "the sidecar changed while the marks were prepared; left as it is")
        os.replace(temporary, entry.sidecar)
    _fsync_folder(os.path.dirname(entry.sidecar))


def _restore(entry: SidecarWrite) -> str | None:
    current = _digest(entry.sidecar)
    _remove_leftover(entry.sidecar)
    if current == entry.before:
        return None  # never written (an interrupted run), or already put back
    if current != entry.after:
        return "changed since vitsearch wrote it (or removed): left as it is"
    if entry.created:
        os.unlink(entry.sidecar)
        return None
    if entry.backup is None or _digest(entry.backup) != entry.before:
        return f"its original's copy ({entry.backup}) is gone or changed: left as it is"
    temporary = _leftover(entry.sidecar)
    shutil.copyfile(entry.backup, temporary)
    with open(temporary, "rb") as f:
        os.fsync(f.fileno())
    os.replace(temporary, entry.sidecar)
    _fsync_folder(os.path.dirname(entry.sidecar))
    return None


def _leftover(sidecar: str) -> str:
    folder, name = os.path.split(sidecar)
    return os.path.join(folder, f".{name}.vitsearch-tmp")


def _remove_leftover(sidecar: str) -> None:
    with_temp = _leftover(sidecar)
    if os.path.lexists(with_temp):
        os.unlink(with_temp)


def _copy_synced(source: str, target: str) -> None:
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copyfile(source, target)
    with open(target, "rb") as f:
        os.fsync(f.fileno())


def _write_manifest(path: Path, entries: list[SidecarWrite], state: str) -> None:
    temporary = path.with_suffix(".tmp")
    with open(temporary, "w") as f:
        json.dump({"kind": "marks", "state": state, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                   "sidecars": [asdict(e) for e in entries]}, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def _digest(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError:
        return None


def _fsync_folder(folder: str) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

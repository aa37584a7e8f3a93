"""Marking duplicates instead of moving them: a cleanup's decisions written into XMP sidecars
(indexer.imaging.xmp), where Lightroom, darktable and digiKam show and filter them, undoable byte
for byte. Nothing is ever written into an image file.

Order, each step safe to be interrupted: the manifest names every sidecar to be written (state
'preparing') -> each new sidecar is prepared beside its target (hidden, checked by reading it
back) and a copy of each original goes into the quarantine folder -> the manifest gives each
sidecar's hash before and after ('writing'; all fsynced) -> the prepared files are renamed into
place ('written'). An undo puts back every sidecar that still holds what was written (one edited
since is the user's and stays: the manifest is then 'kept') and removes the ones it created;
it trusts only manifests in this store's quarantine, naming sidecars of images it indexed."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .errors import ConfigError
from .faults import fault_point
from .imaging.xmp import XmpError, prepare_sidecar
from .records import refresh_records
from .scan import scan_files
from .store.companions import XMP_EXTENSION, sole_companions
from .store.lock import WriterLock
from .store.quarantine_moves import manifests_in_state, mirrored_path, quarantine_dir, write_json_synced
from .store.safe_move import copy_synced, file_digest, fsync_folder, rename_no_replace
from .store.store import encode_path, open_store

__all__ = ["SidecarMark", "SidecarWrite", "MarkReport", "mark_sidecars", "undo_marks", "sidecars_for",
           "undoable_marks", "MARKS_GLOB", "DUPLICATE_KEYWORD"]

MARKS_GLOB = "marks-*.json"
UNDOABLE = ("preparing", "writing", "written")  # 'kept': what is left are sidecars the user edited since
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
    before: str | None  # the original's hash, as content_hash (None: created)
    after: str | None  # the hash of what was written (None: not prepared yet)
    backup: str | None  # the original's copy in the quarantine folder (as written; an undo finds it anew)


@dataclass
class MarkReport:
    manifest: Path | None
    written: list[SidecarWrite] = field(default_factory=list)  # for an undo: the sidecars put back
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)


def sidecars_for(images: list[str]) -> dict[str, list[str]]:
    """The sidecars a mark of each image goes into: its own existing XMP sidecars (`IMG.CR2.xmp`,
    or `IMG.xmp` when no other file shares it), else a new `IMG.CR2.xmp` (darktable's and
    digiKam's name; unambiguous beside a RAW+JPEG pair). One folder listing per folder."""
    own = sole_companions(images)
    return {image: [c for c in own[image] if c.lower().endswith(XMP_EXTENSION)] or [image + XMP_EXTENSION]
            for image in images}


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
        targets = sidecars_for([mark.image for mark in marks])
        planned = [(mark, _planned(sidecar, mark.image, folder, manifest))
                   for mark in marks for sidecar in targets[mark.image]]
        if not planned:
            return report
        folder.mkdir(parents=True, exist_ok=True)
        _write_manifest(manifest, [e for _, e in planned], "preparing")  # names what may lie prepared
        prepared = _prepare(planned, report)
        if not prepared:
            manifest.unlink()
            return report
        _write_manifest(manifest, [e for _, e in prepared], "writing")
        for temporary, entry in prepared:
            fault_point("sidecar_install")
            try:
                _install(temporary, entry)
                report.written.append(entry)
            except OSError as e:
                _remove_leftover(entry.sidecar)
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
    folder = quarantine_dir(store.dir)
    manifest = Path(manifest)
    if not manifest.parent.resolve() == folder.resolve():
        raise ConfigError(f"{manifest} is not in this store's quarantine folder ({folder}): refused")
    state, entries = read_marks(manifest)
    report = MarkReport(manifest)
    with WriterLock(store.dir / "writer.lock", wait=wait):
        indexed = {r["path"] for r in store.records("path", "true")}
        for entry in entries:
            why = _not_ours(entry, indexed) or _restore(entry, _backup(folder, manifest, entry), state)
            if why:
                report.skipped.append((entry.sidecar, why))
            else:
                report.written.append(entry)
        _refresh(store, report.written)
        left = [e for e in entries if e not in report.written]
        if left:
            _write_manifest(manifest, left, "kept")  # sidecars the user edited since: theirs now
        else:
            manifest.rename(manifest.with_suffix(".undone"))
            shutil.rmtree(folder / manifest.stem, ignore_errors=True)  # the originals' copies
    return report


def undoable_marks(folder: Path) -> list[Path]:
    """This quarantine folder's marks manifests an undo can still act on."""
    return manifests_in_state(folder, MARKS_GLOB, UNDOABLE)


def read_marks(manifest: Path) -> tuple[str, list[SidecarWrite]]:
    try:
        data = json.loads(Path(manifest).read_text())
        return str(data["state"]), [SidecarWrite(**e) for e in data["sidecars"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{manifest} is not a vitsearch marks manifest ({type(e).__name__})") from None


# ---- internals ----

def _refresh(store, written: list[SidecarWrite]) -> None:
    """The marked images' rows say what their sidecars now say: search, --where and the next plan
    see the marks without waiting for an index run."""
    refresh_records(store, scan_files(sorted({w.image for w in written})))


def _planned(sidecar: str, image: str, folder: Path, manifest: Path) -> SidecarWrite:
    created = not os.path.lexists(sidecar)
    backup = None if created else os.path.join(folder, manifest.stem, mirrored_path(sidecar))
    return SidecarWrite(sidecar, image, created, None if created else _digest(sidecar), None, backup)


def _prepare(planned: list[tuple[SidecarMark, SidecarWrite]], report: MarkReport) -> list[tuple[str, SidecarWrite]]:
    """Each sidecar's new content, prepared beside it, and each original's copy (all fsynced)."""
    prepared, folders = [], set()
    for mark, entry in planned:
        try:
            temporary, _, _ = prepare_sidecar(entry.sidecar, rating=mark.rating, reject=mark.reject,
                                                    add_keywords=mark.keywords)
        except XmpError as e:
            report.skipped.append((entry.sidecar, str(e)))
            continue
        if temporary is None:
            continue  # it already says all of this
        if entry.backup:
            os.makedirs(os.path.dirname(entry.backup), exist_ok=True)
            copy_synced(entry.sidecar, entry.backup)
            folders.add(os.path.dirname(entry.backup))
        prepared.append((temporary, replace(entry, after=file_digest(temporary))))
    for folder in sorted(folders, key=len, reverse=True):
        fsync_folder(folder)  # the copies must outlive a power cut before any original is replaced
    return prepared


def _install(temporary: str, entry: SidecarWrite) -> None:
    if entry.created:
        rename_no_replace(temporary, entry.sidecar)  # a file that appeared meanwhile is never replaced
    else:
        if _digest(entry.sidecar) != entry.before:
            raise OSError(0, "the sidecar changed while the marks were prepared; left as it is")
        os.replace(temporary, entry.sidecar)
    fsync_folder(os.path.dirname(entry.sidecar))


def _not_ours(entry: SidecarWrite, indexed: set[str]) -> str | None:
    """Only an XMP sidecar beside an image this store indexed is ever touched by an undo."""
    same_folder = os.path.dirname(entry.sidecar) == os.path.dirname(entry.image)
    if not (entry.sidecar.lower().endswith(XMP_EXTENSION) and same_folder and encode_path(entry.image)[0] in indexed):
        return "not a sidecar of an image this store indexed: refused (the manifest is not this store's)"
    return None


def _backup(folder: Path, manifest: Path, entry: SidecarWrite) -> str | None:
    """Where the original's copy lies in this store's quarantine now (the store may have moved)."""
    return None if entry.created else os.path.join(folder, manifest.stem, mirrored_path(entry.sidecar))


def _restore(entry: SidecarWrite, backup: str | None, state: str) -> str | None:
    current = _digest(entry.sidecar)
    _remove_leftover(entry.sidecar)
    if entry.after is None or current == entry.before and not (entry.created and state == "written"):
        return None  # never written (an interrupted run), or already put back
    if current is None and entry.created:
        return "gone since vitsearch wrote it (moved or deleted): nothing to put back"
    if current != entry.after:
        return "changed since vitsearch wrote it (or removed): left as it is"
    if entry.created:
        os.unlink(entry.sidecar)
        return None
    if backup is None or _digest(backup) != entry.before:
        return f"its original's copy ({backup}) is gone or changed: left as it is"
    temporary = _leftover(entry.sidecar)
    copy_synced(backup, temporary)
    os.replace(temporary, entry.sidecar)
    fsync_folder(os.path.dirname(entry.sidecar))
    return None


def _leftover(sidecar: str) -> str:
    folder, name = os.path.split(sidecar)
    return os.path.join(folder, f".{name}.vitsearch-tmp")


def _remove_leftover(sidecar: str) -> None:
    with_temp = _leftover(sidecar)
    if os.path.lexists(with_temp):
        os.unlink(with_temp)


def _write_manifest(path: Path, entries: list[SidecarWrite], state: str) -> None:
    write_json_synced(path, {"kind": "marks", "state": state, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                             "sidecars": [asdict(e) for e in entries]})


def _digest(path: str) -> str | None:
    try:
        return file_digest(path)
    except OSError:
        return None

"""Which files belong to an image: its sidecars and edit files, named after it in its folder, the
one owner of that rule for the scan (what is recorded), the plan (what is listed) and the
quarantine (what moves with it and comes back with it).

A companion named after the whole file name (`IMG_1.CR2.xmp`, `IMG_1.CR2.pp3`) is that file's
alone. One named after the stem (`IMG_1.xmp`, `IMG_1.AAE`, the Live Photo `IMG_1.MOV`) belongs to
every image of that stem in the folder (a RAW+JPEG pair shares it): it moves only with the last of
them, so a plan never takes a file the copy that stays still needs. Names match in any case.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable

from ..extensions import has_image_extension

__all__ = ["COMPANION_EXTENSIONS", "XMP_EXTENSION", "companion_candidate", "companions_in_folder",
           "companions_of", "FolderCompanions", "shared_with", "moving_companions"]

XMP_EXTENSION = ".xmp"
# Named after the whole file name (darktable, digiKam, RawTherapee, DxO, ON1).
_FULL_NAME = frozenset({".xmp", ".pp3", ".dop", ".on1", ".aae"})
# Named after the stem (Lightroom, Capture One and Adobe's XMP, Apple's edits, camera thumbnails, ON1, DxO).
_STEM = frozenset({".xmp", ".aae", ".thm", ".dop", ".on1"})
# A Live Photo's video beside the still it belongs to (Apple writes HEIC or JPEG stills).
_LIVE_PHOTO = ".mov"
_LIVE_STILLS = frozenset({".heic", ".heif", ".jpg", ".jpeg"})
COMPANION_EXTENSIONS = _FULL_NAME | _STEM | {_LIVE_PHOTO}


def companion_candidate(name: str) -> bool:
    """Whether a file of this name may belong to an image (the scan stats only these)."""
    return os.path.splitext(name)[1].lower() in COMPANION_EXTENSIONS


def companions_of(image_name: str, names: Iterable[str]) -> list[str]:
    """The names among `names` (a folder's files) that belong to the image file `image_name`."""
    return FolderCompanions(names).of(image_name)


class FolderCompanions:
    """A folder's companion candidates grouped by the name they are named after, so that finding
    an image's companions costs a lookup, not a pass over the folder (a shoot of 10,000 RAW files
    with their sidecars in one folder made the scan quadratic)."""

    def __init__(self, names: Iterable[str]):
        self._by_base: dict[str, list[tuple[str, str]]] = {}
        for name in names:
            base, suffix = os.path.splitext(name.lower())
            if suffix in COMPANION_EXTENSIONS:
                self._by_base.setdefault(base, []).append((name, suffix))

    def of(self, image_name: str) -> list[str]:
        """The candidates that belong to the image file `image_name`."""
        lower = image_name.lower()
        stem, extension = os.path.splitext(lower)
        found = [n for n, suffix in self._by_base.get(lower, ()) if suffix in _FULL_NAME]
        found += [n for n, suffix in self._by_base.get(stem, ())
                  if suffix in _STEM or (suffix == _LIVE_PHOTO and extension in _LIVE_STILLS)]
        return sorted(found)


def shared_with(companion: str, image_name: str, image_names: Iterable[str]) -> list[str]:
    """The other images of the folder that `companion` (a companion of `image_name`) also belongs to."""
    return [other for other in image_names if other != image_name and companion in companions_of(other, [companion])]


def companions_in_folder(folder: str) -> dict[str, list[str]] | None:
    """Image name -> its companions' names for one folder listing; None when it cannot be listed."""
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    candidates = FolderCompanions(names)
    return {n: candidates.of(n) for n in names if has_image_extension(n)}


def moving_companions(paths: Iterable[str]) -> dict[str, list[str]]:
    """For image files about to move together: each one's companions that move with it (full
    paths). A companion shared with an image that is not moving stays; one shared by several
    moving images goes with the first of them. Links and anything not a plain file stay."""
    by_folder: dict[str, list[str]] = {}
    for path in paths:
        by_folder.setdefault(os.path.dirname(path), []).append(os.path.basename(path))
    result: dict[str, list[str]] = {}
    for folder, moving in by_folder.items():
        listing = companions_in_folder(folder)
        if listing is None:
            continue
        owners: dict[str, list[str]] = {}  # companion -> the images it belongs to, one pass over the folder
        for image, companions in listing.items():
            for companion in companions:
                owners.setdefault(companion, []).append(image)
        taken: set[str] = set()
        leaving = set(moving)
        for name in sorted(moving):
            mine = []
            for companion in listing.get(name, []):
                if companion in taken or any(o not in leaving for o in owners[companion]):
                    continue
                full = os.path.join(folder, companion)
                if os.path.isfile(full) and not os.path.islink(full):
                    mine.append(full)
                    taken.add(companion)
            result[os.path.join(folder, name)] = mine
    return result


# Raised when what is read of an image's records changes, so that every row is read again.
RECORDS_VERSION = "2"


def records_key(size: int, mtime_ns: int, companions: Iterable[tuple[str, int, int]]) -> str:
    """What an image's records are read from: its size and mtime and each companion's name, size
    and mtime. A row whose key differs from the one on disk holds stale records."""
    parts = [RECORDS_VERSION, str(size), str(mtime_ns), *(f"{n}:{s}:{m}" for n, s, m in companions)]
    return hashlib.blake2b("\0".join(parts).encode("utf-8", "surrogateescape"), digest_size=12).hexdigest()


def disk_records_keys(paths: Iterable[str]) -> dict[str, str | None]:
    """The records_key of each image file as it is on disk now (None: gone), one listing per
    folder: a plan checks its members' records are the ones it read (a rating given since the
    last index run must not be planned over)."""
    by_folder: dict[str, list[str]] = {}
    for path in paths:
        by_folder.setdefault(os.path.dirname(path), []).append(path)
    keys: dict[str, str | None] = {}
    for folder, wanted in by_folder.items():
        try:
            names = [n for n in os.listdir(folder) if companion_candidate(n)]
        except OSError:
            names = []
        lookup = FolderCompanions(names)
        for path in wanted:
            try:
                st = os.stat(path)
            except OSError:
                keys[path] = None
                continue
            companions = []
            for name in lookup.of(os.path.basename(path)):
                try:
                    cst = os.lstat(os.path.join(folder, name))
                except OSError:
                    continue
                if stat.S_ISREG(cst.st_mode):
                    companions.append((name, cst.st_size, cst.st_mtime_ns))
            keys[path] = records_key(st.st_size, st.st_mtime_ns, companions)
    return keys

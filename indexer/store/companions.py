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

__all__ = ["COMPANION_EXTENSIONS", "XMP_EXTENSION", "companion_candidate", "companions_of", "FolderCompanions",
           "folder_owners", "sole_companions", "companion_plan", "moving_companions", "records_key",
           "disk_records_keys", "RECORDS_VERSION", "live_photo_videos"]

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


def live_photo_videos(names: Iterable[str]) -> set[str]:
    """The names among a folder's files that are the Live Photo video of a still beside them: a
    companion of that still, never indexed as a video of its own."""
    names = list(names)
    stills = {os.path.splitext(n.lower())[0] for n in names if os.path.splitext(n.lower())[1] in _LIVE_STILLS}
    return {n for n in names if os.path.splitext(n.lower())[1] == _LIVE_PHOTO
            and os.path.splitext(n.lower())[0] in stills}


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


def folder_owners(folder: str) -> tuple[FolderCompanions, dict[str, list[str]]] | None:
    """A folder's companion lookup and, for each companion, every other file it belongs to (an
    image, or a video or document of that stem: an IMG_1.xmp beside IMG_1.JPG and IMG_1.PSD is
    both's); None when the folder cannot be listed."""
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    lookup = FolderCompanions(names)
    owners: dict[str, list[str]] = {}
    for name in names:
        if not companion_candidate(name):
            for companion in lookup.of(name):
                owners.setdefault(companion, []).append(name)
    return lookup, owners


def sole_companions(images: Iterable[str]) -> dict[str, list[str]]:
    """Each image file's companions (full paths) that belong to no other file, one listing per folder."""
    by_folder: dict[str, list[str]] = {}
    for image in images:
        by_folder.setdefault(os.path.dirname(image), []).append(image)
    result: dict[str, list[str]] = {}
    for folder, wanted in by_folder.items():
        lookup, owners = folder_owners(folder) or (FolderCompanions(()), {})
        for image in wanted:
            name = os.path.basename(image)
            result[image] = [os.path.join(folder, c) for c in lookup.of(name) if owners.get(c, [name]) == [name]]
    return result


def companion_plan(paths: list[str]) -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    """For image files about to move, in the order they will move: each one's companions that go
    with it, as (companion path, the other moving files it also belongs to). A companion of a
    file that stays, stays; one shared by several moving files goes with the last of them, so
    that it leaves only once all have left. Links and anything not a plain file stay."""
    order = {path: n for n, path in enumerate(paths)}
    by_folder: dict[str, list[str]] = {}
    for path in paths:
        by_folder.setdefault(os.path.dirname(path), []).append(path)
    result: dict[str, list[tuple[str, tuple[str, ...]]]] = {path: [] for path in paths}
    for folder, moving in by_folder.items():
        found = folder_owners(folder)
        if found is None:
            continue
        lookup, owners = found
        for path in moving:
            name = os.path.basename(path)
            for companion in lookup.of(name):
                others = [os.path.join(folder, o) for o in owners.get(companion, [name]) if o != name]
                if any(o not in order for o in others) or any(order[o] > order[path] for o in others):
                    continue  # another file of it stays, or leaves later and takes it
                full = os.path.join(folder, companion)
                if os.path.isfile(full) and not os.path.islink(full):
                    result[path].append((full, tuple(others)))
    return result


def moving_companions(paths: Iterable[str]) -> dict[str, list[str]]:
    """For image files about to move together: each one's companions that move with it (full
    paths), by companion_plan's rule."""
    return {path: [c for c, _ in found] for path, found in companion_plan(list(paths)).items()}


# Raised when what is read of an image's records changes, so that every row is read again.
RECORDS_VERSION = "2"


def records_key(size: int, mtime_ns: int, companions: Iterable[tuple[str, int, int]]) -> str:
    """What an image's records are read from: its size and mtime and each companion's name, size
    and mtime. A row whose key differs from the one on disk holds stale records."""
    parts = [RECORDS_VERSION, str(size), str(mtime_ns), *(f"{n}:{s}:{m}" for n, s, m in companions)]
    return hashlib.blake2b("\0".join(parts).encode("utf-8", "surrogateescape"), digest_size=12).hexdigest()


def disk_records_keys(files: Iterable[tuple[str, int, int]]) -> dict[str, str]:
    """The records_key of each image file (path, its stored size and mtime) with its companions as
    they are on disk now, one listing per folder: a plan checks its members' sidecars are the
    ones their records were read from (a rating given since the last index run must not be
    planned over). The image's own changes are the plan's other checks."""
    by_folder: dict[str, list[tuple[str, int, int]]] = {}
    for file in files:
        by_folder.setdefault(os.path.dirname(file[0]), []).append(file)
    keys: dict[str, str] = {}
    for folder, wanted in by_folder.items():
        try:
            lookup = FolderCompanions(n for n in os.listdir(folder) if companion_candidate(n))
        except OSError:
            lookup = FolderCompanions(())
        for path, size, mtime_ns in wanted:
            companions = []
            for name in lookup.of(os.path.basename(path)):
                try:
                    st = os.lstat(os.path.join(folder, name))
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    companions.append((name, st.st_size, st.st_mtime_ns))
            keys[path] = records_key(size, mtime_ns, companions)
    return keys

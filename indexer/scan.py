"""Folder scanning: several roots, recursive, loop-safe, never leaving the roots."""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from .errors import ConfigError
from .extensions import has_image_extension, has_video_extension
from .locations import is_within
from .store.companions import FolderCompanions, companion_candidate, live_photo_videos

__all__ = ["ScannedFile", "UnreadableFolder", "scan_folders", "scan_files", "normalize_roots", "is_within"]

# access(2) as open(2) judges it: with the effective ids, where the platform can.
_EFFECTIVE_IDS = os.access in os.supports_effective_ids


@dataclass(frozen=True)
class ScannedFile:
    path: str  # absolute, as reached under its root (symlinks inside the root kept in the name)
    root: str
    size: int
    mtime_ns: int
    readable: bool = True  # by this process: an unreadable file with an unchanged stat is still read (and failed)
    # the files that belong to it (sidecars, edit files: indexer.store.companions): (name, size, mtime_ns)
    companions: tuple[tuple[str, int, int], ...] = ()


@dataclass(frozen=True)
class UnreadableFolder:
    """A folder the scan could not list: its files may still be there, unseen."""

    path: str
    detail: str


def normalize_roots(roots: Iterable[str]) -> list[str]:
    """Absolute, existing directories, with roots nested inside another root dropped."""
    result: list[str] = []
    for root in roots:
        absolute = os.path.abspath(os.path.expanduser(str(root)))
        if not os.path.isdir(absolute):
            raise ConfigError(f"not a folder: {root}")
        result.append(absolute)
    unique = sorted(set(result))
    return [r for r in unique if not any(r != o and is_within(r, o) for o in unique)]


def scan_folders(
    roots: Iterable[str],
    *,
    exclude: Iterable[str] = (),
    include_hidden: bool = False,
    unreadable: list[UnreadableFolder] | None = None,
) -> Iterator[ScannedFile]:
    """Yield image and video files under `roots` (by extension), sorted per folder for stable order.
    A Live Photo's video is its still's companion, not a file of its own.

    Symlinks are followed only when their target lies inside one of the roots, and each real
    directory is entered once, so loops terminate and nothing outside the roots is reached.
    `exclude` globs match a file's or folder's name or its path relative to its root.
    A folder that cannot be listed (permissions, I/O errors) is appended to `unreadable`; one
    that vanished meanwhile is not: its files are gone.
    """
    roots = normalize_roots(roots)
    real_roots = [os.path.realpath(r) for r in roots]
    patterns = list(exclude)
    seen_dirs: set[tuple[int, int]] = set()
    unreadable = [] if unreadable is None else unreadable
    for root in roots:
        yield from _walk(root, real_roots, patterns, include_hidden, seen_dirs, unreadable)


def _walk(root, real_roots, patterns, include_hidden, seen_dirs, unreadable) -> Iterator[ScannedFile]:
    euid = os.geteuid()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in seen_dirs:
                continue
            seen_dirs.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            continue  # vanished since its parent was listed
        except OSError as e:
            unreadable.append(UnreadableFolder(folder, f"cannot list folder: {e.strerror or e}"))
            continue
        reported = False
        subfolders = []
        companions_here = _FolderStats(entries)
        live_videos = None
        for entry in entries:
            if not include_hidden and entry.name.startswith("."):
                continue
            relative = os.path.relpath(entry.path, root)
            if _excluded(entry.name, relative, patterns):
                continue
            if entry.is_symlink() and not _target_inside(entry.path, real_roots):
                continue
            try:
                if entry.is_dir():
                    subfolders.append(entry.path)
                elif entry.is_file() and has_image_extension(entry.name):
                    st = entry.stat()
                    companions = companions_here.of(entry.name)
                    yield ScannedFile(entry.path, root, st.st_size, st.st_mtime_ns, _readable(entry.path, st, euid),
                                      companions)
                elif has_video_extension(entry.name) and entry.is_file():
                    if live_videos is None:
                        live_videos = live_photo_videos(e.name for e in entries)
                    if entry.name not in live_videos:
                        st = entry.stat()
                        yield ScannedFile(entry.path, root, st.st_size, st.st_mtime_ns,
                                          _readable(entry.path, st, euid))
            except PermissionError as e:  # listed but not reachable: a folder without search permission
                if not reported:
                    unreadable.append(UnreadableFolder(folder, f"cannot reach its files: {e.strerror or e}"))
                    reported = True
            except OSError:
                continue  # vanished since the listing, or a broken link
        stack.extend(reversed(subfolders))


def scan_files(paths: Iterable[str]) -> list[ScannedFile]:
    """These image files as a scan finds them (their stat and companions), one listing per folder;
    those gone are left out. For a writer that changed companions (indexer.sidecar_marks)."""
    found = []
    by_folder: dict[str, list[str]] = {}
    for path in paths:
        by_folder.setdefault(os.path.dirname(path), []).append(path)
    for folder, wanted in by_folder.items():
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            continue
        stats, names = _FolderStats(entries), {e.name: e for e in entries}
        for path in wanted:
            entry = names.get(os.path.basename(path))
            try:
                st = entry.stat() if entry is not None else None
            except OSError:
                st = None
            if st is not None:
                found.append(ScannedFile(path, folder, st.st_size, st.st_mtime_ns, True, stats.of(entry.name)))
    return found


class _FolderStats:
    """The companions of a folder's images with their (size, mtime_ns): a sidecar edited later
    changes its image's records (indexer.records), never its embedding. Only a file that belongs
    to an image is statted, once: a folder of documents or of videos alone costs no stat."""

    def __init__(self, entries):
        self._entries = {e.name: e for e in entries if companion_candidate(e.name)}
        self._names = FolderCompanions(self._entries)
        self._stats: dict[str, tuple[int, int] | None] = {}

    def of(self, image_name: str) -> tuple[tuple[str, int, int], ...]:
        found = []
        for name in self._names.of(image_name):
            if name not in self._stats:
                self._stats[name] = _plain_file_stat(self._entries[name])
            if self._stats[name] is not None:
                found.append((name, *self._stats[name]))
        return tuple(found)


def _plain_file_stat(entry) -> tuple[int, int] | None:
    try:
        if entry.is_file(follow_symlinks=False):
            st = entry.stat(follow_symlinks=False)
            return st.st_size, st.st_mtime_ns
    except OSError:
        pass
    return None


def _readable(path: str, st: os.stat_result, euid: int) -> bool:
    """Whether this process may open the file. For one's own file the owner's read bit decides
    (ACLs never change the owner's class), at no cost: a no-op re-index of a library stays a
    stat per file. Otherwise (groups, ACLs, root's capabilities, a squashing NFS) the kernel says."""
    if st.st_uid == euid and euid != 0:
        return bool(st.st_mode & stat.S_IRUSR)
    return os.access(path, os.R_OK, effective_ids=_EFFECTIVE_IDS)


def _excluded(name: str, relative: str, patterns: list[str]) -> bool:
    relative = relative.replace(os.sep, "/")
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(relative, p) for p in patterns)


def _target_inside(path: str, real_roots: list[str]) -> bool:
    target = os.path.realpath(path)
    return any(is_within(target, r) for r in real_roots)

"""Folder scanning: several roots, recursive, loop-safe, never leaving the roots."""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from operator import attrgetter

from .errors import ConfigError
from .extensions import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from .locations import is_within
from .scope import Scope
from .store.companions import COMPANION_EXTENSIONS, FolderCompanions, companion_candidate, live_photo_videos

__all__ = ["ScannedFile", "UnreadableFolder", "scan_folders", "settle_scope", "scan_files", "normalize_roots",
           "is_within"]

_BY_NAME = attrgetter("name")
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
    scope: Scope | None = None,
    links: list[str] | None = None,
) -> Iterator[ScannedFile]:
    """Yield image and video files under `roots` (by extension), sorted per folder for stable order.
    A Live Photo's video is its still's companion, not a file of its own.

    Symlinks are followed only when their target lies inside one of the roots, and each real
    directory is entered once, so loops terminate and nothing outside the roots is reached; each
    one followed is appended to `links`. `exclude` globs match a file's or folder's name or its
    path relative to its root. A folder that cannot be listed (permissions, I/O errors) is
    appended to `unreadable`; one that vanished meanwhile is not: its files are gone.

    `scope` (see settle_scope): only the files it covers, found as the whole walk finds them
    (nothing under a hidden or excluded folder).
    """
    roots = normalize_roots(roots)
    walk = _Walk(roots, list(exclude), include_hidden, [] if unreadable is None else unreadable,
                 [] if links is None else links)
    for root in roots:
        starts = [(root, True)] if scope is None else _starts(scope, root)
        for start, recursive in starts:
            if start == root or walk.enters(root, start):
                yield from walk.files(root, start, recursive)


def settle_scope(scope: Scope, roots: list[str], links: list[str] | None = None) -> Scope:
    """The scope a scan can honour as the whole walk would: where a folder on the way from its
    root cannot be looked at (permissions: the whole walk would say which folder it could not
    list), that root whole; symlinks on the way are appended to `links`. Call it before the scan
    and the plan, which then agree on what is covered."""
    links = [] if links is None else links
    real_roots = [os.path.realpath(r) for r in roots]
    widened = []
    for root in roots:
        for start, _ in _starts(scope, root):
            for folder in _folders_between(root, start):
                try:
                    st = os.lstat(folder)
                except (FileNotFoundError, NotADirectoryError):
                    break  # gone: nothing to scan there, its rows are missing
                except OSError:
                    widened.append(root)
                    break
                if stat.S_ISLNK(st.st_mode) and _target_inside(folder, real_roots):
                    links.append(folder)
    return scope | Scope.of(subtrees=widened) if widened else scope


def _starts(scope: Scope, root: str) -> list[tuple[str, bool]]:
    """Where a scan of `root` within `scope` begins: (folder, recursive), sorted."""
    if any(is_within(root, tree) for tree in scope.subtrees):
        return [(root, True)]
    starts = [(tree, True) for tree in scope.subtrees if is_within(tree, root)]
    starts += [(folder, False) for folder in scope.folders if is_within(folder, root)]
    return sorted(starts)


def _folders_between(root: str, start: str) -> list[str]:
    """The folders from just below `root` down to `start`, in that order."""
    parts = os.path.relpath(start, root).split(os.sep) if start != root else []
    return [os.path.join(root, *parts[:n]) for n in range(1, len(parts) + 1)]


class _Walk:
    """One scan's walk: what it has entered (each real folder once) and what it noted."""

    def __init__(self, roots, patterns, include_hidden, unreadable, links):
        self.real_roots = [os.path.realpath(r) for r in roots]
        self.patterns, self.include_hidden = patterns, include_hidden
        self.unreadable, self.links = unreadable, links
        self.seen_dirs: set[tuple[int, int]] = set()
        self.euid = os.geteuid()

    def enters(self, root: str, start: str) -> bool:
        """Whether the whole walk of `root` reaches the folder `start` (no hidden or excluded
        folder on the way, no symlink out of the roots)."""
        for folder in _folders_between(root, start):
            name = os.path.basename(folder)
            if not self.include_hidden and name.startswith("."):
                return False
            if self.patterns and _excluded(name, os.path.relpath(folder, root), self.patterns):
                return False
            if os.path.islink(folder) and not _target_inside(folder, self.real_roots):
                return False
        return True

    def files(self, root: str, start: str, recursive: bool) -> Iterator[ScannedFile]:
        stack = [start]
        cut = len(root.rstrip(os.sep)) + 1  # an entry's path relative to its root: entry.path[cut:]
        while stack:
            folder = stack.pop()
            entries = self._list(folder)
            if entries is None:
                continue
            found, subfolders = self._files_in(folder, entries, root, cut)
            yield from found
            if recursive:
                stack.extend(reversed(subfolders))

    def _list(self, folder: str) -> list | None:
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in self.seen_dirs:
                return None
            self.seen_dirs.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                return sorted(it, key=_BY_NAME)
        except (FileNotFoundError, NotADirectoryError):
            return None  # vanished since its parent was listed
        except OSError as e:
            self.unreadable.append(UnreadableFolder(folder, f"cannot list folder: {e.strerror or e}"))
            return None

    def _files_in(self, folder, entries, root, cut) -> tuple[list[ScannedFile], list[str]]:
        """The folder's files and the subfolders to walk. The loop runs once per file of the
        library on every sync: each name's extension is taken once, and the companion lookup is
        built only for a folder that has companion candidates."""
        reported, subfolders, found = False, [], []
        extensions = [_extension(e.name) for e in entries]
        candidates = [e for e, x in zip(entries, extensions, strict=True) if x in COMPANION_EXTENSIONS]
        companions_here = _FolderStats(candidates) if candidates else None
        live_videos = None
        for entry, extension in zip(entries, extensions, strict=True):
            name = entry.name
            if not self.include_hidden and name.startswith("."):
                continue
            if self.patterns and _excluded(name, entry.path[cut:], self.patterns):
                continue
            linked = entry.is_symlink()
            if linked and not _target_inside(entry.path, self.real_roots):
                continue
            try:
                if entry.is_dir():
                    subfolders.append(entry.path)
                elif extension in IMAGE_EXTENSIONS and entry.is_file():
                    st = entry.stat()
                    companions = companions_here.of(name) if companions_here is not None else ()
                    found.append(ScannedFile(entry.path, root, st.st_size, st.st_mtime_ns,
                                             _readable(entry.path, st, self.euid), companions))
                elif extension in VIDEO_EXTENSIONS and entry.is_file():
                    if live_videos is None:
                        live_videos = live_photo_videos(e.name for e in entries)
                    if name not in live_videos:
                        st = entry.stat()
                        found.append(ScannedFile(entry.path, root, st.st_size, st.st_mtime_ns,
                                                 _readable(entry.path, st, self.euid)))
                else:
                    continue
                if linked:
                    self.links.append(entry.path)
            except PermissionError as e:  # listed but not reachable: a folder without search permission
                if not reported:
                    self.unreadable.append(UnreadableFolder(folder, f"cannot reach its files: {e.strerror or e}"))
                    reported = True
            except OSError:
                continue  # vanished since the listing, or a broken link
        return found, subfolders


def _extension(name: str) -> str:
    """os.path.splitext(name)[1].lower() of a file name, at a fraction of its cost."""
    dot = name.rfind(".")
    if dot <= 0 or (name[0] == "." and not name[:dot].lstrip(".")):
        return ""
    return name[dot:].lower()


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

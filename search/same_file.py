"""One file under several paths (a symlink and its target, hard links) is one file: never two
duplicates, never a copy to move. And paths that decide something (protect, prefer, avoid,
against) are compared as real paths, so a folder spelled through a link means that folder."""

from __future__ import annotations

import os

from ..indexer.errors import ConfigError
from ..indexer.locations import is_within

__all__ = ["file_identity", "split_aliases", "hard_link_sets", "real_folder", "within"]


def file_identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of the file a path leads to, following links; None when it is gone."""
    try:
        stat = os.stat(path)
    except (OSError, ValueError):  # gone, or a stored key that is no name on disk
        return None
    return stat.st_dev, stat.st_ino


def split_aliases(ids: list[int], paths: dict[int, str]) -> tuple[list[int], set[int]]:
    """The ids with one path per file (a real path before a link, then the lowest id), and the
    ids whose file is also reached another way (another indexed path, or a hard link outside the
    index): moving such a file frees nothing and leaves the other paths dangling or duplicated."""
    by_file: dict[tuple[int, int], list[int]] = {}
    kept, linked = [], set()
    for i in ids:
        identity = file_identity(paths[i])
        if identity is None:
            kept.append(i)
        else:
            by_file.setdefault(identity, []).append(i)
    for same in by_file.values():
        first = min(same, key=lambda i: (os.path.islink(paths[i]), i))  # the real name before a link
        kept.append(first)
        if len(same) > 1 or _hard_linked(paths[first]):
            linked.add(first)
    order = {i: n for n, i in enumerate(ids)}
    return sorted(kept, key=order.__getitem__), linked


def hard_link_sets(ids: list[int], paths: dict[int, str]) -> list[list[int]]:
    """The ids that are one file under several indexed names by hard links (same device and
    inode, none a symbolic link), each set in id order."""
    by_file: dict[tuple[int, int], list[int]] = {}
    for i in ids:
        identity = file_identity(paths[i])
        if identity is not None and not os.path.islink(paths[i]):
            by_file.setdefault(identity, []).append(i)
    return [sorted(same) for same in by_file.values() if len(same) > 1]


def real_folder(path: str, what: str) -> str:
    """A folder named by the user, as its real path; refused when empty or not there. `what` is
    the argument (protect, against) or the rule (prefer:PATH) that named it."""
    parameter = None if ":" in what else what
    if not str(path).strip():
        raise ConfigError(f"{what} needs a folder; an empty one would mean the current folder", parameter=parameter)
    if not os.path.exists(path):
        raise ConfigError(f"{what} {path}: no such file or folder", parameter=parameter)
    return os.path.realpath(path)


def within(path: str, real: str) -> bool:
    """`path`, as stored or through its links, lies under the real folder `real`."""
    if is_within(os.path.abspath(path), real):
        return True
    try:
        return is_within(os.path.realpath(path), real)
    except ValueError:  # a stored key that is no name on disk
        return False


def _hard_linked(path: str) -> bool:
    try:
        return os.stat(path).st_nlink > 1
    except (OSError, ValueError):
        return False

"""The part of the roots a targeted sync looks at (the watcher's): the files directly in some
folders and everything under some subtrees. One owner of what a scope covers, for the scan (what
it lists), the plan (which stored rows may be missing) and the records refresh (which rows it reads).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from .store.store import NOT_UTF8_MARK, encode_path

__all__ = ["Scope"]


@dataclass(frozen=True)
class Scope:
    """`folders`: their files, not their subfolders; `subtrees`: everything under them. Paths
    are absolute; make one with Scope.of, which keeps it minimal (nothing inside a subtree twice)."""

    folders: tuple[str, ...] = ()
    subtrees: tuple[str, ...] = ()

    @classmethod
    def of(cls, folders: Iterable[str] = (), subtrees: Iterable[str] = ()) -> Scope:
        named = {os.path.abspath(os.fsdecode(t)) for t in subtrees}
        trees = {t for t in named if not _under(t, named, strictly=True)}
        loose = {os.path.abspath(os.fsdecode(f)) for f in folders}
        return cls(tuple(sorted(f for f in loose if not _under(f, trees))), tuple(sorted(trees)))

    def __or__(self, other: Scope) -> Scope:
        return Scope.of(self.folders + other.folders, self.subtrees + other.subtrees)

    def __bool__(self) -> bool:
        return bool(self.folders or self.subtrees)

    def __len__(self) -> int:
        return len(self.folders) + len(self.subtrees)

    def covers(self, path: str) -> bool:
        """Whether the file at `path` (a path, or a stored row's key) lies in the scope."""
        path = path.removesuffix(NOT_UTF8_MARK)
        return os.path.dirname(path) in self._folder_keys or _under(path, self._tree_keys)

    def sql(self) -> tuple[str, list]:
        """A predicate over the `images` table's `path` (the rows' keys) selecting the rows the
        scope covers, and its parameters."""
        clauses, params = [], []
        for tree in sorted(self._tree_keys):
            clauses.append("(path = ? OR starts_with(path, ?))")
            params += [tree, tree.rstrip("/") + "/"]
        for folder in sorted(self._folder_keys):
            prefix = folder.rstrip("/") + "/"
            clauses.append("(starts_with(path, ?) AND NOT contains(substr(path, ?), '/'))")
            params += [prefix, len(prefix) + 1]
        return "(" + (" OR ".join(clauses) or "FALSE") + ")", params

    @cached_property
    def _folder_keys(self) -> frozenset[str]:
        return frozenset(_key(f) for f in self.folders)

    @cached_property
    def _tree_keys(self) -> frozenset[str]:
        return frozenset(_key(t) for t in self.subtrees)


def _key(path: str) -> str:
    """The prefix of the stored keys of the files under `path` (see store.encode_path)."""
    return encode_path(path)[0].removesuffix(NOT_UTF8_MARK)


def _under(path: str, trees: set[str] | frozenset[str], *, strictly: bool = False) -> bool:
    """Whether `path` is one of `trees` (unless `strictly`) or lies under one: a look-up per
    folder above it, whatever the number of trees (a burst can name thousands)."""
    if not strictly and path in trees:
        return True
    parent = os.path.dirname(path)
    while parent != path:
        if parent in trees:
            return True
        path, parent = parent, os.path.dirname(parent)
    return False

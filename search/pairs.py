"""RAW+JPEG pairs: the two files a camera writes for one shot (same folder, same name, one of
them RAW). Search shows them as one photo with two files; duplicate review keeps them together."""

from __future__ import annotations

import os
from collections import defaultdict

from ..indexer.store.store import LIVE, Store

__all__ = ["find_pairs", "shot_key"]


def shot_key(path: str) -> tuple[str, str]:
    """(folder, file name without extension, case-folded): what the files of one shot share."""
    folder, name = os.path.split(path)
    return folder, os.path.splitext(name)[0].casefold()


# Rows that share a folder and a lower-cased stem with a RAW file: DuckDB narrows a million rows
# to the few candidates, and shot_key then groups those exactly.
_CANDIDATES = (
    "(regexp_extract(path, '^(.*)/', 1), lower(regexp_replace(regexp_extract(path, '[^/]*$'), '\\.[^.]*$', ''))) "
    "IN (SELECT (regexp_extract(path, '^(.*)/', 1), "
    "lower(regexp_replace(regexp_extract(path, '[^/]*$'), '\\.[^.]*$', ''))) FROM images "
    "WHERE format = 'RAW' AND status = 'ok')"
)


def find_pairs(store: Store) -> dict[int, tuple[int, ...]]:
    """id -> ids of the other files of its shot, for every shot with a RAW and a rendered file."""
    shots: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
    for row in store.records("id, path, format", f"{LIVE} AND {_CANDIDATES}"):
        shots[shot_key(row["path"])].append((row["id"], row["format"]))
    companions: dict[int, tuple[int, ...]] = {}
    for members in shots.values():
        formats = {fmt == "RAW" for _, fmt in members}
        if len(members) > 1 and formats == {True, False}:
            ids = [i for i, _ in members]
            for i in ids:
                companions[i] = tuple(other for other in ids if other != i)
    return companions

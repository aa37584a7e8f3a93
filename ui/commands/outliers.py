"""`vitsearch outliers`: the images least like any other, most unusual first."""

from __future__ import annotations

import json

from ..text import shown
from .arguments import positive_int, store_flag

__all__ = ["add_parser", "run"]


def add_parser(commands) -> None:
    outliers = commands.add_parser("outliers", help="the images least like any other, most unusual first")
    store_flag(outliers)
    outliers.add_argument("-k", type=positive_int, default=20, metavar="N", help="how many (default 20)")
    outliers.add_argument("--json", action="store_true", help="one object per image: id, path, score")
    outliers.set_defaults(handler=run)


def run(args) -> int:
    from ...search import ImageIndex

    for row_id, path, score in ImageIndex.open(args.store).outliers(args.k):
        if args.json:
            print(json.dumps({"id": row_id, "path": path, "score": score}))
        else:
            print(f"{score:.4f}\t{shown(path)}")
    return 0

"""`vitsearch map`: every image's place on a 2-D map of the collection, as text, JSON or a page."""

from __future__ import annotations

import json
import sys

from ..text import shown
from .arguments import store_flag
from .choices import MAP_METHODS

__all__ = ["add_parser", "run"]


def add_parser(commands) -> None:
    atlas = commands.add_parser("map", help="every image's place on a 2-D map of the collection")
    store_flag(atlas)
    atlas.add_argument("--json", action="store_true", help="one object per image: id, path, x, y")
    atlas.add_argument("--out", metavar="MAP.html",
                       help="write a self-contained page: thumbnails, zoom, click for nearest neighbours")
    atlas.add_argument("--method", choices=MAP_METHODS, default="auto",
                       help="auto (default): UMAP when umap-learn is installed (pip install 'vitsearch[map]') "
                            "and the store holds at most 100,000 images, else PCA")
    atlas.set_defaults(handler=run)


def run(args) -> int:
    from ...search import ImageIndex

    index = ImageIndex.open(args.store)
    if args.out:
        from ..map_page import write_map_html

        count = write_map_html(index, args.out, args.method)
        print(f"wrote {args.out}: {count} images", file=sys.stderr)
    if args.json or not args.out:
        for point in index.map(args.method):
            if args.json:
                print(json.dumps({"id": point.id, "path": point.path, "x": point.x, "y": point.y}))
            else:
                print(f"{point.x:.5f}\t{point.y:.5f}\t{shown(point.path)}")
    return 0

"""`vitsearch explain`: which regions of TARGET match QUERY, as text shades, JSON or a heat map."""

from __future__ import annotations

import json
import os
import sys

from ..text import shown
from .arguments import store_flag

__all__ = ["add_parser", "run"]

SHADES = " .:-=+*#%@"  # worst to best


def add_parser(commands) -> None:
    explain = commands.add_parser("explain", help="why TARGET is like QUERY: which of its regions match")
    explain.add_argument("query", metavar="QUERY", help="an image file or id:N")
    explain.add_argument("target", metavar="TARGET", help="an image file or id:N (the grid is over this one)")
    store_flag(explain)
    explain.add_argument("--json", action="store_true",
                         help="one object: grid (rows of floats over TARGET, top row first), width, height, box, score")
    explain.add_argument("--out", metavar="HEAT.png", help="write TARGET with the heat map laid over it")
    explain.set_defaults(handler=run)


def run(args) -> int:
    from ...search import ImageIndex
    from ...search.queries import parse_query

    if args.out:
        _require_png(args.out)  # before the model runs, not after
    index = ImageIndex.open(args.store)
    query, target = parse_query(args.query), parse_query(args.target)
    explanation = index.explain(query, target)
    if args.out:
        from ...search.explain import heat_map

        image, _ = index.image_and_size(target)
        heat_map(image, explanation).save(args.out)
        print(f"wrote {args.out}", file=sys.stderr)
    if args.json:
        print(json.dumps(explanation.to_record()))
        return 0
    values = [v for row in explanation.grid for v in row]
    low, span = min(values), (max(values) - min(values)) or 1.0
    print(f"score {explanation.score:.4f}; how well each region of {shown(args.target)} matches {shown(args.query)} "
          f"(@ best, blank worst; cells of {explanation.cell_box(0, 0)[2] - explanation.box[0]:.0f} px):")
    for row in explanation.grid:
        print("".join(2 * SHADES[min(len(SHADES) - 1, int((v - low) / span * len(SHADES)))] for v in row))
    return 0


def _require_png(path: str) -> None:
    from ...indexer.errors import ConfigError

    if os.path.isdir(path):
        raise ConfigError(f"--out must be a .png file path, not a folder: {shown(path)} (e.g. --out heat.png)")
    if os.path.splitext(path)[1].lower() != ".png":
        raise ConfigError(f"--out must be a .png file path, not {shown(path)} (e.g. --out heat.png)")

"""`vitsearch export`: paths, embeddings and metadata to a Parquet file."""

from __future__ import annotations

import sys

from .arguments import store_flag

__all__ = ["add_parser", "run"]


def add_parser(commands) -> None:
    export = commands.add_parser("export", help="write paths, embeddings and metadata to Parquet")
    export.add_argument("out", metavar="OUT.parquet")
    store_flag(export)
    export.set_defaults(handler=run)


def run(args) -> int:
    from ...search import export_parquet

    count = export_parquet(args.out, args.store)
    print(f"exported {count} images to {args.out}", file=sys.stderr)
    return 0

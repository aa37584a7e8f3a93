"""`vitsearch reindex`: rebuild the vector index from the stored embeddings, of a chosen type."""

from __future__ import annotations

import sys

from .arguments import size, store_flag
from .choices import INDEX_TYPES

__all__ = ["add_parser", "run"]


def add_parser(commands) -> None:
    reindex = commands.add_parser("reindex", help="rebuild the vector index from the stored embeddings")
    store_flag(reindex)
    reindex.add_argument("--index-type", default="auto", choices=INDEX_TYPES)
    reindex.add_argument("--memory-budget", type=size, metavar="SIZE",
                         help="memory the index may use, e.g. 512M or 2G (default 1G); an index that "
                              "does not fit keeps its lists in a mapped file beside it")
    reindex.set_defaults(handler=run)


def run(args) -> int:
    from ...indexer.reindex import reindex
    from ...indexer.store.ann import IVF_MIN_VECTORS

    vectors = reindex(args.store, index_type=args.index_type, memory_budget=args.memory_budget)
    choice = vectors.choice
    if args.index_type not in ("auto", choice.index_type):
        print(f"note: {args.index_type} needs at least {IVF_MIN_VECTORS} images to train on; this store has "
              f"{vectors.count}, so it was built as exact flat search; the next index run past that size builds "
              f"{args.index_type}.", file=sys.stderr)
    where = " (lists on disk)" if choice.on_disk else ""
    print(f"rebuilt {vectors.count} vectors as {choice.index_type}{where} {choice.params or ''} "
          f"(recall@10 {choice.recall if choice.recall is not None else 'exact'}, "
          f"{choice.build_seconds}s)", file=sys.stderr)
    return 0

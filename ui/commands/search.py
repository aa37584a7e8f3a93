"""`vitsearch search`: the images most like one or more queries (files, folders, id:N), or those
holding a label."""

from __future__ import annotations

import json

from ..text import shown
from .arguments import positive_int, score, store_flag

__all__ = ["add_parser", "run"]


def add_parser(commands) -> None:
    search = commands.add_parser("search", help="find images similar to a file or an indexed id")
    search.add_argument("queries", nargs="*", metavar="QUERY",
                        help="an image file, a folder, or id:N (none with --label: list that class's images)")
    store_flag(search)
    search.add_argument("-k", type=positive_int, metavar="N",
                        help="hits per query (default 10; a --label search without a query lists all)")
    search.add_argument("--where", metavar="SQL",
                        help="boolean SQL over the metadata, e.g. \"width >= 1024 AND path LIKE '%%/2023/%%'\" "
                             "(columns: id, path, root, folder, name, size, mtime, width, height, format, "
                             "captured_at, camera, content_hash, indexed_at, labels, label_probs, label)")
    search.add_argument("--label", metavar="NAME",
                        help="images whose top-5 ImageNet classes hold NAME (any synonym, e.g. 'tabby cat'); "
                             "alone, best probability first; with a query, a filter on its hits")
    search.add_argument("--min-score", type=score, metavar="S", help="drop hits below this cosine")
    search.add_argument("--collapse", action="store_true",
                        help="fold hits that are near-duplicates of a higher hit into it (shown as +N copies)")
    search.add_argument("--combine", action="store_true",
                        help="one search for all the queries together (more like these) instead of one each")
    search.add_argument("--not", dest="negatives", action="append", default=[], metavar="QUERY",
                        help="less like this image (repeatable; implies --combine)")
    search.add_argument("--box", metavar="X0,Y0,X1,Y1",
                        help="search with this region of each query image only (pixels of the upright image)")
    output = search.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON object per hit")
    output.add_argument("--paths-only", action="store_true")
    search.set_defaults(handler=run)


def run(args) -> int:
    from ...indexer.errors import ConfigError
    from ...search import ImageIndex
    from ...search.queries import expand_queries, parse_query

    index = ImageIndex.open(args.store)
    if not args.queries and args.label is not None:
        if args.box or args.negatives or args.combine:
            raise ConfigError("--box, --combine and --not need a query image")
        _print_hits(args, [args.label], [index.search_label(args.label, k=args.k, where=args.where)])
        return 0
    if not args.queries:
        raise ConfigError("give a query (an image, a folder of images, or id:N), or --label NAME")
    queries = expand_queries(args.queries)
    if not queries:
        raise ConfigError(f"no image files in {', '.join(args.queries)}: give an image, a folder of images, or id:N")
    parsed = [parse_query(q) for q in queries]
    if args.box:
        from ...search.region import parse_box

        box = parse_box(args.box)
        parsed = [index.region(q, box) for q in parsed]
    options = {"k": args.k or 10, "where": args.where, "min_score": args.min_score, "label": args.label,
               "collapse": args.collapse}
    if args.combine or args.negatives:
        negatives = [parse_query(q) for q in expand_queries(args.negatives)]
        results = [index.search(parsed, negative=negatives, **options)]
        queries = [" + ".join(queries) + "".join(f" - {q}" for q in args.negatives)]
    else:
        results = index.search_many(parsed, **options)
    _print_hits(args, queries, results)
    return 0


def _print_hits(args, queries: list[str], results) -> None:
    from ...search.video_frames import format_time

    for query, hits in zip(queries, results, strict=False):
        if not args.json and not args.paths_only and len(queries) > 1:
            print(f"# {shown(query)}")
        for rank, hit in enumerate(hits, 1):
            if args.json:
                record = {"query": query, "rank": rank, **hit.to_record()}
                print(json.dumps(record, default=str))
            elif args.paths_only:
                print(shown(hit.path))
            else:
                pair = "".join(f"  (+ {shown(c)})" for c in hit.companions)
                copies = f"  (+{len(hit.copies)} copies)" if hit.copies else ""
                at = f" @ {format_time(hit.time)}" if hit.time is not None else ""
                print(f"{hit.score:.4f}\t{shown(hit.path)}{at}{pair}{copies}{'  [stale]' if hit.stale else ''}")

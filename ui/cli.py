"""The `vitsearch` command: thin handlers over indexer/ and search/; heavy imports stay lazy."""

from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = ["main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    from indexer.errors import VitsearchError

    try:
        return args.handler(args) or EXIT_OK
    except VitsearchError as e:
        print(f"Error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("Interrupted: committed batches are kept; run the same command again to resume.", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vitsearch", description="Local image-similarity search over your folders."
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    index = commands.add_parser("index", help="index image folders into a store (only what changed)")
    index.add_argument("paths", nargs="+", metavar="PATH", help="folders to index")
    _store_flag(index)
    index.add_argument("--weights", metavar="FILE|random",
                       help="model weights: a .safetensors/.pth file, or 'random' for tests "
                            "(default: what the store recorded, else timm's pretrained download)")
    index.add_argument("--batch-size", type=_positive_int, default=32, metavar="N")
    index.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    index.add_argument("--exact", action="store_true",
                       help="fp32 and full-size decoding: embeddings equal the reference pipeline's")
    index.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                       help="skip files or folders matching GLOB (name or path under the root); repeatable")
    index.add_argument("--include-hidden", action="store_true", help="also index hidden files and folders")
    index.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    index.set_defaults(handler=_index)

    info = commands.add_parser("info", help="what a store holds")
    _store_flag(info)
    info.add_argument("--json", action="store_true")
    info.add_argument("--failures", action="store_true", help="list failed files with their reasons")
    info.set_defaults(handler=_info)

    export = commands.add_parser("export", help="write paths, embeddings and metadata to Parquet")
    export.add_argument("out", metavar="OUT.parquet")
    _store_flag(export)
    export.set_defaults(handler=_export)

    search = commands.add_parser("search", help="find images similar to a file or an indexed id")
    search.add_argument("queries", nargs="+", metavar="QUERY", help="an image file, a folder, or id:N")
    _store_flag(search)
    search.add_argument("-k", type=_positive_int, default=10, metavar="N")
    output = search.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="one JSON object per hit")
    output.add_argument("--paths-only", action="store_true")
    search.set_defaults(handler=_search)

    demo = commands.add_parser("demo", help="index generated sample images under data/ and search them")
    _store_flag(demo)
    demo.set_defaults(handler=_demo)
    return parser


def _store_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", metavar="DIR",
                        help="store directory (default: $VITSEARCH_STORE, else data/store)")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _index(args) -> int:
    from indexer import build_index

    with _ProgressBar("indexing", "file") as bar:
        report = build_index(
            args.paths, args.store, weights=args.weights, batch_size=args.batch_size, device=args.device,
            exact=args.exact, exclude=args.exclude, include_hidden=args.include_hidden, progress=bar.update,
        )
    if report.repair:
        print(f"note: the FAISS index was {report.repair}", file=sys.stderr)
    for failure in report.failures:
        print(f"skipping {shown(failure.path)}: {failure.reason} ({shown(failure.detail)})", file=sys.stderr)
    summary = report.summary()
    if args.json:
        print(json.dumps(summary))
    else:
        print(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in summary.items()) + f"  (store: {report.store})")
    return EXIT_OK


def _info(args) -> int:
    from search import list_failures, store_info

    info = store_info(args.store)
    if args.json:
        print(json.dumps(info, default=str))
    else:
        for key, value in info.items():
            print(f"{key:>12}: {value}")
    if args.failures:
        for path, reason, detail in list_failures(args.store):
            print(f"{reason}\t{shown(path)}\t{shown(detail or '')}", file=sys.stdout if not args.json else sys.stderr)
    return EXIT_OK


def _export(args) -> int:
    from search import export_parquet

    count = export_parquet(args.out, args.store)
    print(f"exported {count} images to {args.out}", file=sys.stderr)
    return EXIT_OK


def _search(args) -> int:
    from search import ImageIndex

    index = ImageIndex.open(args.store)
    for query in _expand_queries(args.queries):
        hits = index.search(int(query[3:]) if query.startswith("id:") else query, k=args.k)
        for rank, hit in enumerate(hits, 1):
            if args.json:
                record = {"query": query, "rank": rank, **hit.to_record()}
                print(json.dumps(record, default=str))
            elif args.paths_only:
                print(shown(hit.path))
            else:
                print(f"{hit.score:.4f}\t{shown(hit.path)}{'  [stale]' if hit.stale else ''}")
    return EXIT_OK


def _expand_queries(queries: list[str]) -> list[str]:
    """A folder stands for the images directly inside it, in name order."""
    from indexer.images import IMAGE_EXTENSIONS

    expanded = []
    for query in queries:
        if os.path.isdir(query):
            names = sorted(n for n in os.listdir(query) if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS)
            expanded.extend(os.path.join(query, n) for n in names)
        else:
            expanded.append(query)
    return expanded


def _demo(args) -> int:
    from .demo import run_demo

    return run_demo(args.store)


def shown(text: str) -> str:
    """Control characters escaped, so a hostile file name cannot forge output lines."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class _ProgressBar:
    """A tqdm bar on stderr (files/s, ETA), created once the total is known."""

    def __init__(self, description: str, unit: str):
        self.description, self.unit, self.bar = description, unit, None

    def update(self, done: int, total: int) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.description, unit=self.unit, file=sys.stderr,
                            dynamic_ncols=True, disable=None)
        self.bar.update(done - self.bar.n)

    def __enter__(self) -> "_ProgressBar":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


if __name__ == "__main__":
    sys.exit(main())

"""The `vitsearch` command: thin handlers over indexer/ and search/; heavy imports stay lazy."""

from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = ["main", "run"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    from ..indexer.errors import VitsearchError

    try:
        return args.handler(args) or EXIT_OK
    except VitsearchError as e:
        print(f"Error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # the reader went away (`| head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush there
        return EXIT_OK
    except OSError as e:  # disk full, permissions: the system's own words, without a traceback
        where = f" ({e.filename})" if e.filename else ""
        print(f"Error: {e.strerror or e}{where}. Nothing committed was lost; fix this and run the "
              "same command again.", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("Interrupted: committed batches are kept; run the same command again to resume.", file=sys.stderr)
        return 130


def run() -> None:
    """The `vitsearch` command's entry: main(), then the process ends without interpreter teardown."""
    from .process_exit import exit_process

    exit_process(main())


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
    index.add_argument("--batch-size", type=_positive_int, metavar="N",
                       help="images per model call (default: 32 on CPU, 128 on CUDA)")
    index.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    index.add_argument("--decode", default="auto", choices=["auto", "cpu", "device"],
                       help="where JPEGs are decoded and resized: 'device' = on the model's device "
                            "(nvJPEG on CUDA), 'cpu' = Pillow in reader threads (default: device on CUDA)")
    index.add_argument("--exact", action="store_true",
                       help="fp32 and full-size decoding: embeddings equal the reference pipeline's")
    index.add_argument("--precision", choices=["auto", "bf16", "int8", "fp32"], default="auto",
                       help="CPU model precision (default auto: the fastest this CPU runs natively among bf16 "
                            "and int8, kept only if the first batch reaches cosine 0.999 to fp32 on every image, "
                            "else the next; recorded in the store, shown by info)")
    index.add_argument("--compile", choices=["auto", "yes", "no"], default="auto",
                       help="run the CPU model as a graph compiled ahead of time (~1.2x in bf16), built once "
                            "(~30-45 s) and kept in the cache. Default auto: built in a run of 1000+ images to "
                            "embed, then loaded by every run with a full batch; yes: build it now; no: eager")
    index.add_argument("--exclude", action="append", default=[], metavar="GLOB",
                       help="skip files or folders matching GLOB (name or path under the root); repeatable")
    index.add_argument("--include-hidden", action="store_true", help="also index hidden files and folders")
    index.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    index.add_argument("--watch", action="store_true",
                       help="after the sync, keep running and follow changes under PATH (Ctrl-C or SIGTERM "
                            "stops it); one line per change on stderr")
    index.add_argument("--poll", type=_positive_float, metavar="SECONDS",
                       help="with --watch: rescan every SECONDS instead of OS events (network filesystems, "
                            "or trees past the OS watch limit); implies --watch")
    index.add_argument("--engine", choices=["local", "ray"], default="local",
                       help="ray: decode and embed new and changed files on a Ray cluster (pip install "
                            "'vitsearch[ray]'; workers must see the paths); the store is the same")
    index.add_argument("--ray-address", metavar="auto|ADDRESS",
                       help="join this Ray cluster (default: start a local one sized to this machine)")
    index.add_argument("--gpus-per-worker", type=_positive_float, metavar="N",
                       help="GPUs per embedding actor (default: 1 when the cluster has GPUs, else CPU actors)")
    index.add_argument("--cpus-per-worker", type=_positive_float, metavar="N",
                       help="CPUs per embedding actor (default: 1 with GPUs, else half the cores)")
    index.add_argument("--shard-size", type=_positive_int, default=256, metavar="N",
                       help="--engine ray: files per result shard, merged as each completes (a killed job "
                            "redoes at most the shards in flight; default 256)")
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
    search.add_argument("queries", nargs="*", metavar="QUERY",
                        help="an image file, a folder, or id:N (none with --label: list that class's images)")
    _store_flag(search)
    search.add_argument("-k", type=_positive_int, metavar="N",
                        help="hits per query (default 10; a --label search without a query lists all)")
    search.add_argument("--where", metavar="SQL",
                        help="boolean SQL over the metadata, e.g. \"width >= 1024 AND path LIKE '%%/2023/%%'\" "
                             "(columns: id, path, root, folder, name, size, mtime, width, height, format, "
                             "captured_at, camera, content_hash, indexed_at, labels, label_probs, label)")
    search.add_argument("--label", metavar="NAME",
                        help="images whose top-5 ImageNet classes hold NAME (any synonym, e.g. 'tabby cat'); "
                             "alone, best probability first; with a query, a filter on its hits")
    search.add_argument("--min-score", type=_score, metavar="S", help="drop hits below this cosine")
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
    search.set_defaults(handler=_search)

    explain = commands.add_parser("explain", help="why TARGET is like QUERY: which of its regions match")
    explain.add_argument("query", metavar="QUERY", help="an image file or id:N")
    explain.add_argument("target", metavar="TARGET", help="an image file or id:N (the grid is over this one)")
    _store_flag(explain)
    explain.add_argument("--json", action="store_true",
                         help="one object: grid (rows of floats over TARGET, top row first), width, height, box, score")
    explain.add_argument("--out", metavar="HEAT.png", help="write TARGET with the heat map laid over it")
    explain.set_defaults(handler=_explain)

    atlas = commands.add_parser("map", help="every image's place on a 2-D map of the collection")
    _store_flag(atlas)
    atlas.add_argument("--json", action="store_true", help="one object per image: id, path, x, y")
    atlas.add_argument("--out", metavar="MAP.html",
                       help="write a self-contained page: thumbnails, zoom, click for nearest neighbours")
    atlas.add_argument("--method", choices=["auto", "umap", "pca"], default="auto",
                       help="auto (default): UMAP when umap-learn is installed (pip install 'vitsearch[map]') "
                            "and the store holds at most 100,000 images, else PCA")
    atlas.set_defaults(handler=_map)

    outliers = commands.add_parser("outliers", help="the images least like any other, most unusual first")
    _store_flag(outliers)
    outliers.add_argument("-k", type=_positive_int, default=20, metavar="N", help="how many (default 20)")
    outliers.add_argument("--json", action="store_true", help="one object per image: id, path, score")
    outliers.set_defaults(handler=_outliers)

    dupes = commands.add_parser("dupes", help="groups of identical, near-duplicate and similar images")
    _store_flag(dupes)
    dupes.add_argument("--tier", action="append",
                       choices=["identical", "same-pixels", "near", "similar", "burst"],
                       help="only members of these tiers (repeatable; default: all, or identical, same-pixels "
                            "and near with --resolve)")
    dupes.add_argument("--near", type=_score, metavar="S",
                       help="near-duplicate threshold (default: the store's calibrated one, else 0.95)")
    dupes.add_argument("--similar", type=_score, metavar="S",
                       help="similar threshold (default: the store's calibrated one, else 0.85)")
    dupes.add_argument("--json", action="store_true", help="one JSON object per group (or per plan with --resolve)")
    dupes.add_argument("--histogram", action="store_true",
                       help="print the distribution of nearest-neighbour scores, to choose thresholds")
    dupes.add_argument("--against", metavar="PATH",
                       help="only groups with files both under PATH and elsewhere (is this folder already in the "
                            "library?)")
    dupes.add_argument("--resolve", metavar="RULES",
                       help="plan a cleanup: keeper preferences in order, ties falling to the next, e.g. "
                            "largest-resolution,largest-file,oldest-capture,has-exif,shortest-path,prefer:PATH,"
                            "keep-raw (a dry run unless --apply)")
    dupes.add_argument("--protect", action="append", metavar="PATH",
                       help="never move files under PATH; a protected copy is the one kept (repeatable)")
    dupes.add_argument("--apply", action="store_true",
                       help="carry out the --resolve plan: move the others into the store's quarantine folder, "
                            "manifest first")
    dupes.add_argument("--undo", nargs="?", const="", metavar="MANIFEST",
                       help="put back every file of a quarantine manifest (default: the last --apply)")
    dupes.add_argument("--calibrate", action="store_true",
                       help="label sample pairs (same photo or not) to set this store's thresholds")
    dupes.add_argument("--not-duplicates", nargs="+", type=int, metavar="ID",
                       help="record that these images are not duplicates of one another")
    dupes.add_argument("--keep", type=int, metavar="ID", help="record this image as the one to keep")
    dupes.add_argument("--wait", type=float, default=10.0, metavar="SECONDS",
                       help="how long a decision, --apply or --undo waits for a running `vitsearch index` to "
                            "release the store before saying it is busy (default 10)")
    dupes.set_defaults(handler=_dupes)

    reindex = commands.add_parser("reindex", help="rebuild the vector index from the stored embeddings")
    _store_flag(reindex)
    reindex.add_argument("--index-type", default="auto",
                         choices=["auto", "flat", "ivf-flat", "ivf-sq8", "ivf-pq"])
    reindex.add_argument("--memory-budget", type=_size, metavar="SIZE",
                         help="memory the index may use, e.g. 512M or 2G (default 1G); an index that "
                              "does not fit keeps its lists in a mapped file beside it")
    reindex.set_defaults(handler=_reindex)

    serve = commands.add_parser("serve", help="the web page: search by image, review duplicates")
    _store_flag(serve)
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=7860)
    serve.add_argument("--auth", metavar="USER:PASS", help="require this login (needed off loopback)")
    serve.add_argument("--insecure-no-auth", action="store_true",
                       help="allow a non-loopback --host without --auth")
    serve.set_defaults(handler=_serve)

    demo = commands.add_parser("demo", help="index generated sample images under data/ and search them")
    _store_flag(demo)
    demo.set_defaults(handler=_demo)
    return parser


def _store_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", metavar="DIR",
                        help="store directory (default: $VITSEARCH_STORE, else data/store in a source "
                             "checkout, else the user's data folder, ~/.local/share/vitsearch/store on Linux)")


def _size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    try:
        if text[-1:].upper() in units:
            return int(float(text[:-1]) * units[text[-1].upper()])
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 512M, 2G)") from None


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _number(text: str, kind=float, what: str = "a number"):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None


def _positive_float(text: str) -> float:
    value = _number(text)
    if not 0 < value < float("inf"):  # also false for nan
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def _score(text: str) -> float:
    """A cosine similarity: a number from -1 to 1 (nan and inf are refused)."""
    value = _number(text)
    if not -1.0 <= value <= 1.0:  # also false for nan
        raise argparse.ArgumentTypeError(f"a similarity is between -1 and 1, not {text}")
    return value


def _port(text: str) -> int:
    value = _number(text, int, "a port number")
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is between 1 and 65535, not {value}")
    return value


def _index(args) -> int:
    from ..indexer.build import build_index, load_store_encoder, save_deferred
    from ..indexer.scan import normalize_roots
    from ..indexer.store.vectors import DeferredSaves

    normalize_roots(args.paths)  # a missing folder is said before the model loads
    watching = args.watch or args.poll is not None
    if args.engine == "ray":
        return _index_ray(args, watching)
    stop = _stop_on_signals() if watching else None
    model = {"weights": args.weights, "device": args.device, "exact": args.exact, "decode": args.decode,
             "precision": args.precision, "compile_mode": args.compile}
    # A watch loads the model once for all its syncs; a single sync loads it only if it has work for it.
    encoder = load_store_encoder(args.store, **model) if watching else None

    # A watch keeps FAISS in memory between its syncs and writes the file at most once a minute
    # (and when it stops): DuckDB's change log carries the rest to readers and restarts.
    deferred = DeferredSaves() if watching else None

    def sync(progress=None):
        return build_index(args.paths, args.store, encoder=encoder, **model, batch_size=args.batch_size,
                           exclude=args.exclude, include_hidden=args.include_hidden, progress=progress,
                           deferred=deferred)

    with _ProgressBar("indexing", "file") as bar:
        report = sync(bar.update)
    _print_report(args, report)
    if watching and not stop.is_set():
        _watch(args, sync, stop, report.store)
        save_deferred(args.store, deferred)  # not after a second signal: that stops at once (the log has it all)
    return EXIT_OK


def _print_report(args, report) -> None:
    if report.repair:
        print(f"note: the FAISS index was {report.repair}", file=sys.stderr)
    if report.signed:
        print(f"note: computed duplicate signatures of {report.signed} earlier-indexed images (no re-embedding)",
              file=sys.stderr)
    check = report.precision_check
    if check and check["tried"][0]["precision"] != check["precision"]:
        failed = ", ".join(f"{t['precision']} reached {t['min_cosine']:.4f}" for t in check["tried"][:-1])
        print(f"note: {failed} (< 0.999 to fp32 on the first batch): the model runs {check['precision']}",
              file=sys.stderr)
    if report.labelled and report.labelled > report.embedded:
        print(f"note: labelled {report.labelled} images from their stored embeddings (no re-embedding)",
              file=sys.stderr)
    for failure in report.failures:
        print(f"skipping {shown(failure.path)}: {failure.reason} ({shown(failure.detail)})", file=sys.stderr)
    summary = report.summary()
    if args.json:
        print(json.dumps(summary), flush=True)
    else:
        print(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in summary.items()) + f"  (store: {report.store})",
              flush=True)


def _index_ray(args, watching: bool) -> int:
    from ..indexer.errors import ConfigError
    from ..indexer.ray.engine import RayOptions, build_index_ray

    if watching:
        raise ConfigError("--watch follows changes with the local engine: drop --engine ray (the store is the same)")
    if args.device != "auto" or args.decode != "auto":
        raise ConfigError("with --engine ray, workers choose their device: use --gpus-per-worker instead")
    options = RayOptions(args.ray_address, args.gpus_per_worker, args.cpus_per_worker)
    with _ProgressBar("embedding on Ray", "file") as bar:
        report = build_index_ray(args.paths, args.store, weights=args.weights, options=options,
                                 batch_size=args.batch_size, exact=args.exact, exclude=args.exclude,
                                 include_hidden=args.include_hidden, shard_size=args.shard_size,
                                 progress=bar.update)
    print(f"ray: {report.sent_to_cluster} files sent to the cluster, embedded on {len(report.nodes)} node(s)"
          + (f", GPUs {sorted(report.gpu_ids)}" if report.gpu_ids else ""), file=sys.stderr)
    _print_report(args, report)
    return EXIT_OK


def _watch(args, sync, stop, store_dir: str) -> None:
    from ..indexer.scan import normalize_roots
    from ..indexer.watch import WatchSettings, watch_folders

    roots = [str(r) for r in normalize_roots(args.paths)]
    print(f"watching {', '.join(map(shown, roots))} (Ctrl-C or SIGTERM stops)", file=sys.stderr, flush=True)

    def log(line: str) -> None:
        print(shown(line), file=sys.stderr, flush=True)

    watch_folders(roots, sync, stop, WatchSettings(poll=args.poll), log=log, ignore=(store_dir,))
    print("stopped watching; the store is up to date with the last sync", file=sys.stderr)


def _stop_on_signals():
    """SIGINT/SIGTERM end a watch after the sync in progress; a second one stops at once (a kill
    at any instant leaves a store that resumes)."""
    import signal
    import threading

    stop = threading.Event()

    def handle(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("stopping after the sync in progress (again to stop now)", file=sys.stderr, flush=True)

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop


def _info(args) -> int:
    from ..search import list_failures, store_info

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
    from ..search import export_parquet

    count = export_parquet(args.out, args.store)
    print(f"exported {count} images to {args.out}", file=sys.stderr)
    return EXIT_OK


def _search(args) -> int:
    from ..indexer.errors import ConfigError
    from ..search import ImageIndex

    index = ImageIndex.open(args.store)
    if not args.queries and args.label is not None:
        if args.box or args.negatives or args.combine:
            raise ConfigError("--box, --combine and --not need a query image")
        _print_hits(args, [args.label], [index.search_label(args.label, k=args.k, where=args.where)])
        return EXIT_OK
    if not args.queries:
        raise ConfigError("give a query (an image, a folder of images, or id:N), or --label NAME")
    args.k = args.k or 10
    queries = _expand_queries(args.queries)
    if not queries:
        raise ConfigError(f"no image files in {', '.join(args.queries)}: give an image, a folder of images, or id:N")
    parsed = [_parse_query(q) for q in queries]
    if args.box:
        from ..search.region import parse_box

        box = parse_box(args.box)
        parsed = [index.region(q, box) for q in parsed]
    from ..search.index import COLLAPSE_POOL

    depth = (COLLAPSE_POOL if args.collapse else 1) * args.k  # collapsing needs a deeper pool to fill k
    if args.combine or args.negatives:
        negatives = [_parse_query(q) for q in _expand_queries(args.negatives)]
        hits = index.search_combined(parsed, negatives, k=depth, where=args.where, min_score=args.min_score,
                                     label=args.label)
        queries, results = [" + ".join(queries) + "".join(f" - {q}" for q in args.negatives)], [hits]
    else:
        results = index.search_many(parsed, k=depth, where=args.where, min_score=args.min_score, label=args.label)
    if args.collapse:
        results = [index.collapse(hits)[:args.k] for hits in results]
    _print_hits(args, queries, results)
    return EXIT_OK


def _print_hits(args, queries: list[str], results) -> None:
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
                print(f"{hit.score:.4f}\t{shown(hit.path)}{pair}{copies}{'  [stale]' if hit.stale else ''}")


def _explain(args) -> int:
    from ..search import ImageIndex

    if args.out:
        _require_png(args.out)  # before the model runs, not after
    index = ImageIndex.open(args.store)
    query, target = _parse_query(args.query), _parse_query(args.target)
    explanation = index.explain(query, target)
    if args.out:
        from ..search.explain import heat_map

        image, _ = index.image_and_size(target)
        heat_map(image, explanation).save(args.out)
        print(f"wrote {args.out}", file=sys.stderr)
    if args.json:
        print(json.dumps(explanation.to_record()))
        return EXIT_OK
    shades = " .:-=+*#%@"
    values = [v for row in explanation.grid for v in row]
    low, span = min(values), (max(values) - min(values)) or 1.0
    print(f"score {explanation.score:.4f}; how well each region of {shown(args.target)} matches {shown(args.query)} "
          f"(@ best, blank worst; cells of {explanation.cell_box(0, 0)[2] - explanation.box[0]:.0f} px):")
    for row in explanation.grid:
        print("".join(2 * shades[min(len(shades) - 1, int((v - low) / span * len(shades)))] for v in row))
    return EXIT_OK


def _require_png(path: str) -> None:
    from ..indexer.errors import ConfigError

    if os.path.isdir(path):
        raise ConfigError(f"--out must be a .png file path, not a folder: {shown(path)} (e.g. --out heat.png)")
    if os.path.splitext(path)[1].lower() != ".png":
        raise ConfigError(f"--out must be a .png file path, not {shown(path)} (e.g. --out heat.png)")


def _map(args) -> int:
    from ..search import ImageIndex

    index = ImageIndex.open(args.store)
    if args.out:
        from .map_page import write_map_html

        count = write_map_html(index, args.out, args.method)
        print(f"wrote {args.out}: {count} images", file=sys.stderr)
    if args.json or not args.out:
        for point in index.map(args.method):
            if args.json:
                print(json.dumps({"id": point.id, "path": point.path, "x": point.x, "y": point.y}))
            else:
                print(f"{point.x:.5f}\t{point.y:.5f}\t{shown(point.path)}")
    return EXIT_OK


def _outliers(args) -> int:
    from ..search import ImageIndex

    for row_id, path, score in ImageIndex.open(args.store).outliers(args.k):
        if args.json:
            print(json.dumps({"id": row_id, "path": path, "score": score}))
        else:
            print(f"{score:.4f}\t{shown(path)}")
    return EXIT_OK


def _parse_query(query: str):
    if query.startswith("id:"):
        try:
            return int(query[3:])
        except ValueError:
            from ..indexer.errors import ConfigError

            raise ConfigError(f"not an id: {query!r} (write id:42)") from None
    return query


def _dupes(args) -> int:
    from .dupes_command import run_dupes

    return run_dupes(args, shown)


def _reindex(args) -> int:
    from ..indexer.reindex import reindex
    from ..indexer.store.ann import IVF_MIN_VECTORS

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
    return EXIT_OK


def _expand_queries(queries: list[str]) -> list[str]:
    """A folder stands for the images directly inside it, in name order."""
    from ..indexer.imaging.images import IMAGE_EXTENSIONS

    expanded = []
    for query in queries:
        if os.path.isdir(query):
            names = sorted(n for n in os.listdir(query) if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS)
            expanded.extend(os.path.join(query, n) for n in names)
        else:
            expanded.append(query)
    return expanded


def _serve(args) -> int:
    from .serve import serve

    serve(args.store, host=args.host, port=args.port, auth=args.auth, insecure_no_auth=args.insecure_no_auth)
    return EXIT_OK


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
        if self.bar is not None and total != self.bar.total:  # a second pass (signatures) starts
            self.bar.close()
            self.bar, self.description = None, "signatures"
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.description, unit=self.unit, file=sys.stderr,
                            dynamic_ncols=True, disable=None)
        self.bar.update(done - self.bar.n)

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


if __name__ == "__main__":
    run()

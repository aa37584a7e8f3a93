"""`vitsearch index`: sync folders into a store (only what changed), on this machine or a Ray
cluster, and with --watch keep following their changes."""

from __future__ import annotations

import json
import sys

from ...indexer.model.compiled import COMPILE_MODES
from ...indexer.model.precision import PRECISION_CHOICES
from ..progress import ProgressBar
from ..text import shown
from .arguments import positive_float, positive_int, store_flag
from .choices import DECODE_MODES, DEVICES, ENGINES

__all__ = ["add_parser", "run"]


def add_parser(commands) -> None:
    index = commands.add_parser("index", help="index image folders into a store (only what changed)")
    index.add_argument("paths", nargs="+", metavar="PATH", help="folders to index")
    store_flag(index)
    index.add_argument("--weights", metavar="FILE|random",
                       help="model weights: a .safetensors/.pth file, or 'random' for tests "
                            "(default: what the store recorded, else timm's pretrained download)")
    index.add_argument("--batch-size", type=positive_int, metavar="N",
                       help="images per model call (default: 32 on CPU, 128 on CUDA)")
    index.add_argument("--device", default="auto", choices=DEVICES)
    index.add_argument("--decode", default="auto", choices=DECODE_MODES,
                       help="where JPEGs are decoded and resized: 'device' = on the model's device "
                            "(nvJPEG on CUDA), 'cpu' = Pillow in reader threads (default: device on CUDA)")
    index.add_argument("--exact", action="store_true",
                       help="fp32 and full-size decoding: embeddings equal the reference pipeline's")
    index.add_argument("--precision", choices=PRECISION_CHOICES, default="auto",
                       help="CPU model precision (default auto: the fastest this CPU runs natively among bf16 "
                            "and int8, kept only if the first batch reaches cosine 0.999 to fp32 on every image, "
                            "else the next; recorded in the store, shown by info)")
    index.add_argument("--compile", choices=COMPILE_MODES, default="auto",
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
    index.add_argument("--poll", type=positive_float, metavar="SECONDS",
                       help="with --watch: rescan every SECONDS instead of OS events (network filesystems, "
                            "or trees past the OS watch limit); implies --watch")
    _ray_flags(index)
    index.set_defaults(handler=run)


def _ray_flags(index) -> None:
    index.add_argument("--engine", choices=ENGINES, default="local",
                       help="ray: decode and embed new and changed files on a Ray cluster (pip install "
                            "'vitsearch[ray]'; workers must see the paths); the store is the same")
    index.add_argument("--ray-address", metavar="auto|ADDRESS",
                       help="join this Ray cluster (default: start a local one sized to this machine)")
    index.add_argument("--gpus-per-worker", type=positive_float, metavar="N",
                       help="GPUs per embedding actor (default: 1 when the cluster has GPUs, else CPU actors)")
    index.add_argument("--cpus-per-worker", type=positive_float, metavar="N",
                       help="CPUs per embedding actor (default: 1 with GPUs, else half the cores)")
    index.add_argument("--shard-size", type=positive_int, default=256, metavar="N",
                       help="--engine ray: files per result shard, merged as each completes (a killed job "
                            "redoes at most the shards in flight; default 256)")


def run(args) -> int:
    from ...indexer.scan import normalize_roots

    normalize_roots(args.paths)  # a missing folder is said before the model loads
    if args.engine == "ray":
        return _index_ray(args)
    if args.watch or args.poll is not None:
        return _watch(args)
    from ...indexer.build import build_index

    with ProgressBar("indexing", "file") as bar:
        report = build_index(args.paths, args.store, **_model_options(args), batch_size=args.batch_size,
                             exclude=args.exclude, include_hidden=args.include_hidden, progress=bar.update)
    _print_report(args, report)
    return 0


def _model_options(args) -> dict:
    return {"weights": args.weights, "device": args.device, "exact": args.exact, "decode": args.decode,
            "precision": args.precision, "compile_mode": args.compile}


def _watch(args) -> int:
    from ...indexer.watch import IndexWatcher, WatchSettings

    stop = _stop_on_signals()
    watcher = IndexWatcher(args.paths, args.store, **_model_options(args), batch_size=args.batch_size,
                           exclude=args.exclude, include_hidden=args.include_hidden)
    with ProgressBar("indexing", "file") as bar:
        report = watcher.sync(bar.update)
    _print_report(args, report)
    if not stop.is_set():
        print(f"watching {', '.join(map(shown, watcher.roots))} (Ctrl-C or SIGTERM stops)", file=sys.stderr,
              flush=True)
        watcher.follow(stop, WatchSettings(poll=args.poll), log=lambda line: print(shown(line), file=sys.stderr,
                                                                                  flush=True))
        print("stopped watching; the store is up to date with the last sync", file=sys.stderr)
    return 0


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


def _index_ray(args) -> int:
    from ...indexer.errors import ConfigError
    from ...indexer.ray.engine import RayOptions, build_index_ray

    if args.watch or args.poll is not None:
        raise ConfigError("--watch follows changes with the local engine: drop --engine ray (the store is the same)")
    if args.device != "auto" or args.decode != "auto":
        raise ConfigError("with --engine ray, workers choose their device: use --gpus-per-worker instead")
    options = RayOptions(args.ray_address, args.gpus_per_worker, args.cpus_per_worker)
    with ProgressBar("embedding on Ray", "file") as bar:
        report = build_index_ray(args.paths, args.store, weights=args.weights, options=options,
                                 batch_size=args.batch_size, exact=args.exact, exclude=args.exclude,
                                 include_hidden=args.include_hidden, shard_size=args.shard_size,
                                 progress=bar.update)
    print(f"ray: {report.sent_to_cluster} files sent to the cluster, embedded on {len(report.nodes)} node(s)"
          + (f", GPUs {sorted(report.gpu_ids)}" if report.gpu_ids else ""), file=sys.stderr)
    _print_report(args, report)
    return 0


def _print_report(args, report) -> None:
    if report.repair:
        print(f"note: the FAISS index was {report.repair}", file=sys.stderr)
    if report.records_read:
        print(f"note: read the XMP records (ratings, picks, keywords) of {report.records_read} images whose sidecars "
              "changed, or indexed before records were read (no re-embedding)", file=sys.stderr)
    if report.record_notes:
        path, why = report.record_notes[0]
        more = len(report.record_notes) - 1
        count = len(report.record_notes)
        print(f"note: the XMP of {count} image{'s' if count != 1 else ''} could not all be read (indexed anyway): "
              f"{shown(path)}: {shown(why)}" + (f"; and {more} more (--where \"records_note IS NOT NULL\")"
                                                 if more else ""), file=sys.stderr)
    if report.signed:
        print(f"note: computed duplicate signatures of {report.signed} earlier-indexed images (no re-embedding)",
              file=sys.stderr)
    check = report.precision_check
    if check and check.fell_back:
        failed = ", ".join(f"{t.precision} reached {t.min_cosine:.4f}" for t in check.tried[:-1])
        print(f"note: {failed} (< 0.999 to fp32 on the first batch): the model runs {check.precision}",
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

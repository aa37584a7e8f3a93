"""`vitsearch index --engine ray`: the same scan, sync plan and store as the local engine, with
the decoding and embedding of new and changed files done by a Ray Data job.

The driver decides everything that needs no model (unchanged, moved, copied, vanished files) with
the local engine's own code, fixes the ids of the rest, and sends only those to the cluster.
Results stream back in order; each completed shard is written as Parquet with the images
table's columns and merged into DuckDB in one bulk transaction, so a killed job loses at most
the shards in flight: a re-run sees the merged files as unchanged and sends the others again.
Workers must see the image paths (a shared filesystem) and get the weights from the driver.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from ..backfill import backfill_signatures, expire_stale_signatures
from ..build import load_store_encoder, record_unreadable
from ..errors import ConfigError
from ..faults import fault_point
from ..ingest import IndexRun, ReadFile, _same_content, default_workers
from ..model.encoder import Encoder, encoder_identity
from ..model.labels import label_rows
from ..model.precision import record_precision
from ..plan import plan_sync, stored_sizes
from ..records import refresh_records
from ..report import FileFailure, IndexReport, Progress
from ..scan import ScannedFile, UnreadableFolder, normalize_roots, scan_folders
from ..store.lock import WriterLock
from ..store.store import SHARD_COLUMNS, RowState, Store, encode_path, open_store
from ..store.vectors import open_for_writing, sync_and_save
from ..video_ingest import index_videos

__all__ = ["build_index_ray", "RayOptions", "SHARD_SIZE", "SHARD_DIR"]

SHARD_SIZE = 256  # files per Parquet shard: a kill loses at most the shards in flight
SHARD_DIR = "ray-shards"
DECODE_BATCH = 4  # small decode blocks keep the embedding actors fed from the start


@dataclass
class RayOptions:
    address: str | None = None  # None: start a local Ray sized to this machine; "auto" or host:port joins one
    gpus_per_worker: float | None = None  # None: 1 when the cluster has GPUs, else CPU actors
    cpus_per_worker: float | None = None
    init_kwargs: dict | None = None  # extra ray.init arguments for a local instance (tests: logical GPUs)


def build_index_ray(roots: Iterable[str], store_dir=None, *, weights: str | None = None,
                    encoder: Encoder | None = None, options: RayOptions | None = None,
                    batch_size: int | None = None, exact: bool = False, exclude: Iterable[str] = (),
                    include_hidden: bool = False, shard_size: int = SHARD_SIZE,
                    progress: Progress | None = None) -> IndexReport:
    """Index `roots` into the store with a Ray job; the result is the store build_index makes."""
    _require_ray()
    started = time.perf_counter()
    roots = normalize_roots(roots)
    store = open_store(store_dir, read_only=False)
    store.dir.mkdir(parents=True, exist_ok=True)
    options = options or RayOptions()
    with WriterLock(store.dir / "writer.lock"), _Cluster() as cluster:
        unreadable: list[UnreadableFolder] = []
        scanned = list(scan_folders(roots, exclude=exclude, include_hidden=include_hidden, unreadable=unreadable))
        if encoder is None:  # the model loads on a thread while Ray starts, if there is work for it
            loading = _Background(load_store_encoder, store_dir, weights, device="cpu", exact=exact, decode="cpu")
            if plan_sync(scanned, store.rows() if store.exists() else {}, roots, unreadable).to_read:
                cluster.start(options)
            encoder = loading.result()
        manifest = store.initialize(encoder_identity(encoder))
        expire_stale_signatures(store, manifest, encoder.draft_size)
        vectors = open_for_writing(store, manifest)
        report = IndexReport(repair=vectors.repair, store=str(store.dir))
        shard_dir = store.dir / SHARD_DIR
        _merge_leftovers(store, shard_dir, scanned, encoder.dim)
        rows = store.rows()
        plan = plan_sync(scanned, rows, roots, unreadable)
        report.unchanged = plan.unchanged
        run = _DriverRun(store, encoder, rows, plan.missing, report, batch_size or encoder.default_batch_size)
        run.read_all(plan.to_read, default_workers(encoder), None)
        index_videos(run, plan.videos, progress)  # on the driver: FFmpeg decodes a video with its own threads
        report.embedded += report.embedded_videos
        run.remove_missing()
        record_unreadable(store, plan, unreadable, report)  # as a local run does
        tasks = _fix_ids(store, run.pending, shard_size)
        report.sent_to_cluster = len(tasks)
        if tasks:
            cluster.start(options)
            _run_job(tasks, encoder, store, shard_dir, report, options, batch_size or encoder.default_batch_size,
                     progress)
        if report.worker_precisions:  # each actor's hardware chose (and checked) its own
            report.precision = ",".join(sorted(report.worker_precisions))
            record_precision(store, report.precision, graph="eager")
        # the cluster's rows get their records here, on the driver
        report.records_read = refresh_records(store, scanned, progress, report.record_notes)
        report.signed = backfill_signatures(store, roots, encoder.draft_size, workers=default_workers(encoder))
        if encoder.label_head is not None:  # on the driver: a matrix multiply over stored vectors
            report.labelled = label_rows(store, encoder.label_head)
        sync_and_save(store, vectors)
    report.seconds = round(time.perf_counter() - started, 3)
    report.images_per_s = round(report.embedded / report.seconds, 3) if report.seconds else 0.0
    return report


class _Background:
    """A call on a thread; result() waits and re-raises its error here."""

    def __init__(self, fn, *args, **kwargs):
        import threading

        self.value, self.error = None, None
        self.thread = threading.Thread(target=self._run, args=(fn, args, kwargs), daemon=True)
        self.thread.start()

    def _run(self, fn, args, kwargs):
        try:
            self.value = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            self.error = e

    def result(self):
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.value


class _Cluster:
    """Ray, started (or joined) at most once per run and shut down after it when this run started it."""

    def __init__(self):
        self.started_here = False

    def start(self, options: RayOptions) -> None:
        import ray

        if not ray.is_initialized():
            _init_ray(options)
            self.started_here = True

    def __enter__(self) -> _Cluster:
        return self

    def __exit__(self, *exc) -> None:
        if self.started_here:
            import ray

            ray.shutdown()


class _DriverRun(IndexRun):
    """The local engine's decisions without the model: a file is hashed only when a stored file
    has its size (it may be a move or a copy); whatever needs embedding is set aside."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pending: list[tuple[ScannedFile, RowState | None]] = []
        self.sizes = stored_sizes(args[2])

    def _read(self, work, decode: bool = False) -> ReadFile:
        file, row = work
        if file.size not in self.sizes:
            return ReadFile(file, row)  # nothing stored could share its bytes: the cluster reads it
        return super()._read(work)

    def _prepare(self, data: bytes):
        return None, None, None  # no decoding on the driver

    def _decide(self, item: ReadFile) -> None:
        hashed = item.content_hash is not None
        reusable = hashed and (_same_content(item.row, item.content_hash) or item.content_hash in self.hashes)
        if item.error is None and not reusable:
            self.pending.append((item.file, item.row))
        else:
            super()._decide(item)


def _fix_ids(store: Store, pending, shard_size: int) -> list[dict]:
    """The cluster's work list: every file with its id fixed (a changed file keeps its row's)."""
    if not pending:
        return []
    with store.transaction() as tx:
        fresh = iter(tx.reserve_ids(sum(row is None for _, row in pending)))
    tasks = []
    for n, (f, row) in enumerate(pending):
        tasks.append({"id": row.id if row is not None else next(fresh), "path": f.path, "root": f.root,
                      "size": f.size, "mtime_ns": f.mtime_ns, "shard": n // shard_size,
                      "existed": row is not None})
    return tasks


def _run_job(tasks, encoder: Encoder, store: Store, shard_dir: Path, report: IndexReport, options: RayOptions,
             batch_size: int, progress: Progress | None) -> None:
    import logging

    import ray
    import ray.data

    from .job import Embedder, decode_batch

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # its INFO lines would bury our progress
    # ...and it warns that the progress bars it draws are off: ours are on.
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = False  # shards are collected by their counts, in any order
    context.enable_progress_bars = False
    resources = ray.cluster_resources()
    gpus, cpus, actors = _actor_shape(resources, options)
    # Decode tasks may use what the actors leave: left unbounded they would take every slot
    # and hold the actors back until all decoding is done.
    blocks = max(1, min(-(-len(tasks) // DECODE_BATCH), 1000))
    decoders = max(1, min(int(resources.get("CPU", 1) - actors * cpus), blocks))
    dataset = ray.data.from_items(tasks, override_num_blocks=blocks)
    dataset = dataset.map_batches(decode_batch, batch_size=DECODE_BATCH, num_cpus=1,
                                  compute=ray.data.TaskPoolStrategy(size=decoders),
                                  fn_kwargs={"draft_size": encoder.draft_size})
    recipe = ray.put(encoder.recipe())  # the weights travel once, through the object store
    batch_size = batch_size if gpus else min(batch_size, 16)  # CPU actors: smaller batches pipeline better
    dataset = dataset.map_batches(Embedder, batch_size=batch_size, compute=ray.data.ActorPoolStrategy(size=actors),
                                  num_gpus=gpus, num_cpus=cpus,
                                  # nested in a list: the actor fetches it itself (restartable)
                                  fn_constructor_kwargs={"recipe": [recipe], "threads": max(1, int(cpus))})
    _collect(dataset, tasks, store, shard_dir, encoder.dim, report, progress)


def _init_ray(options: RayOptions) -> None:
    import ray

    kwargs = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    if options.address:
        ray.init(address=options.address, **kwargs)
        return
    cores = os.cpu_count() or 1
    # Decode tasks need CPU slots beside the embedding actor: advertise more slots than cores.
    local = {"num_cpus": max(4, 2 * cores), **(options.init_kwargs or {})}
    if "num_gpus" not in local:
        import torch

        local["num_gpus"] = torch.cuda.device_count()
    ray.init(**local, **kwargs)


def _actor_shape(resources: dict, options: RayOptions) -> tuple[float, float, int]:
    """(GPUs per actor, CPUs per actor, actors): one actor per GPU when there are GPUs; otherwise
    CPU actors big enough that torch is not single-threaded, leaving slots for decoding."""
    total_gpus, total_cpus = resources.get("GPU", 0), resources.get("CPU", 1)
    gpus = options.gpus_per_worker if options.gpus_per_worker is not None else (1.0 if total_gpus else 0.0)
    if gpus:
        if total_gpus < gpus:
            raise ConfigError(f"gpus_per_worker={gpus:g}, but the cluster has {total_gpus:g} GPUs",
                              parameter="gpus_per_worker")
        return gpus, options.cpus_per_worker or 1.0, max(1, int(total_gpus // gpus))
    cores = os.cpu_count() or 1
    cpus = options.cpus_per_worker or float(max(1, min(cores, total_cpus // 2)))
    return 0.0, cpus, max(1, int(total_cpus // (2 * cpus)))


def _collect(dataset, tasks, store: Store, shard_dir: Path, dim: int, report: IndexReport,
             progress: Progress | None) -> None:
    """Stream results back; write and merge each shard as soon as all its files are in."""
    sizes: dict[int, int] = {}
    for task in tasks:
        sizes[task["shard"]] = sizes.get(task["shard"], 0) + 1
    by_id = {t["id"]: t for t in tasks}
    waiting: dict[int, list[dict]] = {}
    done = 0
    shard_dir.mkdir(parents=True, exist_ok=True)
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        for n in range(len(batch["id"])):
            task = by_id[int(batch["id"][n])]
            waiting.setdefault(task["shard"], []).append(_row(task, batch, n))
            if len(waiting[task["shard"]]) == sizes[task["shard"]]:
                _write_and_merge(waiting.pop(task["shard"]), task["shard"], store, shard_dir, dim, report)
                done += sizes[task["shard"]]
                if progress:
                    progress("index", done, len(tasks))
        report.nodes.update(str(x) for x in batch["node"])
        report.decode_nodes.update(str(x) for x in batch["decode_node"])
        report.gpu_ids.update(str(x) for x in batch["gpus"] if str(x))
        report.worker_precisions.update(str(x) for x in batch["precision"] if x)  # None: a model without precisions


def _row(task: dict, batch: dict, n: int) -> dict:
    facts = json.loads(batch["facts"][n])
    reason = str(batch["reason"][n])
    name, raw = encode_path(task["path"])
    captured = facts.get("captured_at")
    return {
        "id": task["id"], "path": name, "path_bytes": raw, "root": task["root"], "size": task["size"],
        "mtime_ns": task["mtime_ns"], "content_hash": str(batch["content_hash"][n]) or None,
        "width": facts.get("width"), "height": facts.get("height"), "format": facts.get("format"),
        "captured_at": datetime.fromisoformat(captured) if captured else None, "camera": facts.get("camera"),
        "status": "failed" if reason else "ok", "error": reason or None,
        "error_detail": str(batch["detail"][n])[:1000] if reason else None, "warnings": facts.get("warnings"),
        "embedding": None if reason else np.asarray(batch["embedding"][n], np.float32),
        "pixel_hash": facts.get("pixel_hash"), "orientation_hash": facts.get("orientation_hash"),
        "_existed": task["existed"], "_path": task["path"],
    }


def _write_and_merge(rows: list[dict], shard: int, store: Store, shard_dir: Path, dim: int,
                     report: IndexReport) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows.sort(key=lambda r: r["id"])
    columns = {c: [r[c] for r in rows] for c in SHARD_COLUMNS}
    columns["embedding"] = pa.array([None if e is None else e.tolist() for e in columns["embedding"]],
                                    pa.list_(pa.float32(), dim))
    types = _arrow_types()
    table = pa.table({c: columns[c] if c == "embedding" else pa.array(columns[c], types[c]) for c in SHARD_COLUMNS})
    path = shard_dir / f"shard-{rows[0]['id']:012d}-{len(rows)}.parquet"
    temporary = path.with_suffix(".tmp")
    pq.write_table(table, temporary)
    os.replace(temporary, path)
    fault_point("ray_shard_written")
    with store.transaction() as tx:
        tx.merge_parquet(str(path), dim)
    path.unlink()
    for r in rows:
        if r["status"] == "failed":
            report.failed += 1
            report.failures.append(FileFailure(r["_path"], r["error"], r["error_detail"] or ""))
        else:
            report.embedded += 1
            if r["_existed"]:
                report.updated += 1
            else:
                report.added += 1
            report.changes.append(("updated" if r["_existed"] else "added", r["_path"]))


def _merge_leftovers(store: Store, shard_dir: Path, scanned: list[ScannedFile], dim: int) -> None:
    """Shards a killed run wrote but did not merge: their rows still true of the files on disk
    (same path, size and mtime) are merged now instead of being embedded again."""
    if not shard_dir.is_dir():
        return
    import pyarrow.parquet as pq

    current = {encode_path(f.path)[0]: (f.size, f.mtime_ns) for f in scanned}
    stored = {r.path: (r.size, r.mtime_ns) for r in store.rows().values() if r.status != "failed"}
    for path in sorted(shard_dir.glob("shard-*.parquet")):
        table = pq.read_table(path)
        keep = [current.get(p) == (s, m) and stored.get(p) != (s, m)
                for p, s, m in zip(*(table.column(c).to_pylist() for c in ("path", "size", "mtime_ns")), strict=True)]
        if any(keep):
            kept = path.with_suffix(".kept")
            pq.write_table(table.filter(keep), kept)
            with store.transaction() as tx:
                tx.merge_parquet(str(kept), dim)
            kept.unlink()
        path.unlink()
    for stray in shard_dir.glob("*.tmp"):
        stray.unlink()


def _require_ray() -> None:
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError("the Ray engine needs Ray: pip install 'vitsearch[ray]'") from None


def _arrow_types():
    import pyarrow as pa

    return {"id": pa.int64(), "path": pa.string(), "path_bytes": pa.binary(), "root": pa.string(),
            "size": pa.int64(), "mtime_ns": pa.int64(), "content_hash": pa.string(), "width": pa.int32(),
            "height": pa.int32(), "format": pa.string(), "captured_at": pa.timestamp("us"), "camera": pa.string(),
            "status": pa.string(), "error": pa.string(), "error_detail": pa.string(), "warnings": pa.string(),
            "pixel_hash": pa.string(), "orientation_hash": pa.int64()}


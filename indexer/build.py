"""build_index: scan the folders, plan what changed, embed it in batches, bring FAISS along."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from .backfill import backfill_signatures, expire_stale_signatures
from .faults import fault_point
from .ingest import IndexRun, default_workers
from .model.encoder import Encoder, check_model_options, encoder_identity, load_encoder
from .model.labels import label_rows
from .model.precision import record_precision, reuse_precision_check
from .model.weights import MODEL_NAME, weights_from_manifest
from .plan import StoredRows, SyncPlan, plan_sync, reusable_hashes
from .prefetch import Prefetch, start_prefetch
from .recorded_model import recorded_model_if_idle
from .records import read_stale_records
from .report import FileFailure, IndexReport, Progress
from .scan import UnreadableFolder, normalize_roots, scan_folders, settle_scope
from .scope import Scope
from .store.lock import WriterLock
from .store.store import open_store
from .store.vectors import (
    FAISS_NAME,
    DeferredSaves,
    VectorIndex,
    clean_leftovers,
    load_saved,
    needs_new_layout,
    open_for_writing,
    saved_index_current,
    sync_and_save,
)
from .video_ingest import index_videos

__all__ = ["build_index", "load_store_encoder", "save_deferred", "IndexReport", "FileFailure", "Scope"]


def load_store_encoder(store_dir: str | os.PathLike | None = None, weights: str | None = None, *,
                       device: str = "auto", exact: bool = False, decode: str = "auto",
                       precision: str | None = None, compile_mode: str = "auto") -> Encoder:
    """The encoder an index run into this store uses: `weights` (a file or "random") > what the
    store recorded > timm's pretrained download. Load it once to run build_index many times."""
    store = open_store(store_dir)
    weights = weights or (weights_from_manifest(store.manifest()) if store.exists() else None)
    return load_encoder(weights, device=device, exact=exact, decode=decode, precision=precision,
                        compile_mode=compile_mode)


def _record_precision(store, encoder: Encoder, report: IndexReport) -> None:
    """The precision the run used and, when its first batch checked it, the check: in the report
    and the store's manifest (an encoder without precisions, such as a test's fake, records none)."""
    precision = encoder.precision_used
    if precision is None:
        return
    report.precision = precision
    check = encoder.precision_check
    fresh = check if check is not None and not check.reused else None
    if fresh is not None:
        report.precision_check = fresh
    record_precision(store, precision, check=fresh, graph=encoder.graph if report.embedded else None)


def save_deferred(store_dir: str | os.PathLike | None, deferred: DeferredSaves) -> bool:
    """Write the FAISS index a series of deferred syncs kept in memory (a watch's end); True if
    there was anything to write."""
    if not deferred.pending:
        return False
    store = open_store(store_dir, read_only=False)
    with WriterLock(store.dir / "writer.lock"):
        deferred.finish(store, deferred.open(store, store.manifest()), force=True)
    return True


def _early_plan(store, scanned, roots, unreadable, scope) -> tuple[SyncPlan, StoredRows] | None:
    """The plan (and rows) before the model loads; None for a store this cannot read yet (an
    older layout, damage): initialize() upgrades or names it, and the plan is made after."""
    try:
        rows = StoredRows.read(store, scope)
    except Exception:  # noqa: BLE001 - see above
        return None
    return plan_sync(scanned, rows, roots, unreadable, scope), rows


def _open_vectors(store, manifest: dict) -> VectorIndex | None:
    """A run's index: None while the saved file is current and intact (saved_index_current), to be
    loaded only if the run changes a vector; else opened (and repaired) at once."""
    if saved_index_current(store, manifest):
        clean_leftovers(store)
        return None
    return open_for_writing(store, manifest)


def _save_vectors(store, vectors: VectorIndex | None, generation: int) -> str | None:
    """sync_and_save, unless the run changed no vector (the store is still at `generation`, which
    the saved file was checked to hold), so a no-op run reads and writes nothing of it (at 100k
    images of 512 floats that file is 200 MB). Returns what had to be repaired, if anything."""
    manifest = store.manifest()
    repair = None
    if vectors is None:
        if int(manifest.get("generation", 0)) == generation:
            return None
        vectors, repair = load_saved(store)  # as it was at `generation`: the sync catches it up
    elif (int(manifest.get("generation", 0)) == vectors.generation and (store.dir / FAISS_NAME).exists()
            and not needs_new_layout(vectors, manifest)):
        return None
    sync_and_save(store, vectors)
    return repair


def record_unreadable(store, plan: SyncPlan, unreadable: list[UnreadableFolder], report: IndexReport) -> None:
    """Each folder the scan could not list is a failure of the run, said as a fresh index says
    it; the rows under it are kept, failed `unreadable` (see plan_sync). A row whose name is not
    UTF-8 loses its raw bytes meanwhile: its next successful read writes them again."""
    for folder in unreadable:
        report.failed += 1
        report.failures.append(FileFailure(folder.path, "unreadable", folder.detail))
    if plan.unlisted:
        with store.transaction() as tx:
            for row, folder in plan.unlisted:
                tx.write_failure(row.id, row.path, row.root, row.size, row.mtime_ns, row.content_hash,
                                 "unreadable", f"{folder.detail} ({folder.path})")


def _model_for_run(store, early: tuple[SyncPlan, dict] | None, weights: str | None,
                   **options) -> tuple[Encoder, Prefetch | None]:
    """The store's recorded identity when the run has nothing to embed (no torch, no model);
    else the model, with the run's first files decoding while it loads."""
    check_model_options(exact=options["exact"], precision=options["precision"],
                        compile_mode=options["compile_mode"])  # bad options are said even when idle
    recorded = recorded_model_if_idle(store, early and early[0], weights)
    if recorded is not None:
        return recorded, None
    prefetch = early and start_prefetch(store, *early, weights, exact=options["exact"], model_name=MODEL_NAME)
    try:
        return load_store_encoder(store.dir, weights, **options), prefetch
    except BaseException:
        if prefetch:
            prefetch.cancel()
        raise


def build_index(
    roots: Iterable[str],
    store_dir: str | os.PathLike | None = None,
    *,
    weights: str | None = None,
    encoder: Encoder | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    exact: bool = False,
    decode: str = "auto",
    precision: str | None = None,
    compile_mode: str = "auto",
    exclude: Iterable[str] = (),
    include_hidden: bool = False,
    workers: int | None = None,
    progress: Progress | None = None,
    deferred: DeferredSaves | None = None,
    only: Scope | None = None,
    links: list[str] | None = None,
) -> IndexReport:
    """Index the images under `roots` into the store at `store_dir`, doing only what changed since
    the last run.

    Weights: `weights` (a file or "random") > what the store recorded > timm's pretrained download.
    `batch_size` and `workers` default to what suits the encoder's device (see run.default_workers).
    `deferred`: for repeated syncs (--watch), keeps FAISS in memory and saves it when due.
    `only`: a targeted sync (the watcher's) of the files that Scope covers, which ends as a
    whole sync would for them; stored rows outside it are neither read nor removed. `links`:
    appended with the symlinks the scan followed (where a change may show under two names).
    """
    started = time.perf_counter()
    roots = normalize_roots(roots)
    store = open_store(store_dir, read_only=False)
    store.dir.mkdir(parents=True, exist_ok=True)
    with WriterLock(store.dir / "writer.lock"):
        unreadable: list[UnreadableFolder] = []
        if only is not None:
            only = settle_scope(only, roots, links)
        scanned = list(scan_folders(roots, exclude=exclude, include_hidden=include_hidden, unreadable=unreadable,
                                    scope=only, links=links))
        early = _early_plan(store, scanned, roots, unreadable, only)
        if progress and early and early[0].to_read:
            progress("index", 0, len(early[0].to_read))  # the work ahead is shown while the model loads
        prefetch = None
        if encoder is None:
            encoder, prefetch = _model_for_run(store, early, weights, device=device, exact=exact, decode=decode,
                                               precision=precision, compile_mode=compile_mode)
        manifest = store.initialize(encoder_identity(encoder))
        expire_stale_signatures(store, manifest, encoder.draft_size)  # backfill_signatures below signs them
        reuse_precision_check(manifest, encoder)
        vectors = deferred.open(store, manifest) if deferred else _open_vectors(store, manifest)
        report = IndexReport(repair=vectors and vectors.repair, store=str(store.dir))
        if early is None:  # the store could not be read before initialize() upgraded it
            rows = StoredRows.read(store, only)
            early = plan_sync(scanned, rows, roots, unreadable, only), rows
        plan, rows = early
        report.unchanged = plan.unchanged
        batch_size = batch_size or encoder.default_batch_size
        run = IndexRun(store, encoder, plan.touched, plan.missing, report, batch_size, prefetch=prefetch)
        run.hashes = reusable_hashes(store, plan)  # a copy or a rename of any stored file reuses its embedding
        run.read_all(plan.to_read, workers or default_workers(encoder), progress)
        index_videos(run, plan.videos, progress)
        report.embedded += report.embedded_videos
        run.remove_missing()
        record_unreadable(store, plan, unreadable, report)
        report.records_read = read_stale_records(store, plan.stale_records, progress, report.record_notes)
        _record_precision(store, encoder, report)
        report.signed = backfill_signatures(store, roots, encoder.draft_size,
                                            workers=workers or default_workers(encoder), progress=progress)
        if encoder.label_head is not None:
            report.labelled = label_rows(store, encoder.label_head)
        fault_point("before_faiss")
        if deferred:
            deferred.finish(store, vectors)
        else:
            report.repair = _save_vectors(store, vectors, int(manifest.get("generation", 0))) or report.repair
    report.seconds = round(time.perf_counter() - started, 3)
    report.images_per_s = round(report.embedded / report.seconds, 3) if report.seconds else 0.0
    return report

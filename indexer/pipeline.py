"""The indexing run: scan, plan, read and embed in overlapped batches, commit, sync FAISS."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from .encoder import Encoder, encoder_identity, load_encoder
from .faults import fault_point
from .lock import WriterLock
from .plan import plan_sync
from .report import FileFailure, IndexReport
from .run import IndexRun, Progress, default_workers
from .scan import normalize_roots, scan_folders
from .store import Store, default_store_dir
from .vectors import (
    clean_leftovers, needs_new_layout, open_vector_index, rebuild, refresh_vector_index,
    save_vector_index,
)
from .weights import weights_from_manifest

__all__ = ["build_index", "IndexReport", "FileFailure"]


def build_index(
    roots: Iterable[str],
    store: str | os.PathLike | None = None,
    *,
    weights: str | None = None,
    encoder: Encoder | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    exact: bool = False,
    decode: str = "auto",
    exclude: Iterable[str] = (),
    include_hidden: bool = False,
    workers: int | None = None,
    progress: Progress | None = None,
) -> IndexReport:
    """Index the images under `roots` into `store`, doing only what changed since the last run.

    Weights: `weights` (a file or "random") > what the store recorded > timm's pretrained download.
    `batch_size` and `workers` default to what suits the encoder's device (see run.default_workers).
    """
    started = time.perf_counter()
    roots = normalize_roots(roots)
    db = Store(store or default_store_dir(), read_only=False)
    db.dir.mkdir(parents=True, exist_ok=True)
    with WriterLock(db.dir / "writer.lock"):
        if encoder is None:
            weights = weights or (weights_from_manifest(db.manifest()) if db.exists() else None)
            encoder = load_encoder(weights, device=device, exact=exact, decode=decode)
        manifest = db.initialize(encoder_identity(encoder))
        clean_leftovers(db)
        vectors = open_vector_index(db, manifest)
        if vectors.repair:
            save_vector_index(db, vectors)
        report = IndexReport(repair=vectors.repair, store=str(db.dir))
        scanned = list(scan_folders(roots, exclude=exclude, include_hidden=include_hidden))
        rows = db.rows()
        plan = plan_sync(scanned, rows, roots)
        report.unchanged = plan.unchanged
        batch_size = batch_size or getattr(encoder, "default_batch_size", 32)
        run = IndexRun(db, encoder, rows, plan.missing, report, batch_size)
        run.read_all(plan.to_read, workers or default_workers(encoder), progress)
        run.remove_missing()
        fault_point("before_faiss")
        manifest = db.manifest()
        vectors = refresh_vector_index(db, vectors, manifest)
        if needs_new_layout(vectors, manifest):
            vectors = rebuild(db, manifest)
        save_vector_index(db, vectors)
        db.truncate_log(vectors.generation)
    report.seconds = round(time.perf_counter() - started, 3)
    report.images_per_s = round(report.embedded / report.seconds, 3) if report.seconds else 0.0
    return report

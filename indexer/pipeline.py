"""The indexing run: scan, plan, read and embed in overlapped batches, commit, sync FAISS."""

from __future__ import annotations

import hashlib
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from .encoder import Encoder, encoder_identity, load_encoder
from .errors import ImageLoadError
from .faults import fault_point
from .images import ImageInfo, load_image, read_image_bytes
from .lock import WriterLock
from .plan import plan_sync
from .scan import ScannedFile, normalize_roots, scan_folders
from .store import RowState, Store, default_store_dir
from .vectors import (
    clean_leftovers, needs_new_layout, open_vector_index, rebuild, refresh_vector_index,
    save_vector_index,
)
from .weights import weights_from_manifest

__all__ = ["build_index", "IndexReport", "FileFailure"]

COMMIT_EVERY_SECONDS = 5.0
MAX_PENDING_OPS = 512

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class FileFailure:
    path: str
    reason: str
    detail: str


@dataclass
class IndexReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    moved: int = 0
    removed: int = 0
    failed: int = 0
    seconds: float = 0.0
    images_per_s: float = 0.0
    embedded: int = 0
    failures: list[FileFailure] = field(default_factory=list)
    repair: str | None = None
    store: str = ""

    SUMMARY_KEYS = ("added", "updated", "unchanged", "moved", "removed", "failed", "seconds", "images_per_s")

    def summary(self) -> dict:
        """The run's figures under exactly the documented keys."""
        values = asdict(self)
        return {k: values[k] for k in self.SUMMARY_KEYS}


def build_index(
    roots: Iterable[str],
    store: str | os.PathLike | None = None,
    *,
    weights: str | None = None,
    encoder: Encoder | None = None,
    batch_size: int = 32,
    device: str = "auto",
    exact: bool = False,
    exclude: Iterable[str] = (),
    include_hidden: bool = False,
    workers: int | None = None,
    progress: Progress | None = None,
) -> IndexReport:
    """Index the images under `roots` into `store`, doing only what changed since the last run.

    Weights: `weights` (a file or "random") > what the store recorded > timm's pretrained download.
    """
    started = time.perf_counter()
    roots = normalize_roots(roots)
    db = Store(store or default_store_dir(), read_only=False)
    db.dir.mkdir(parents=True, exist_ok=True)
    with WriterLock(db.dir / "writer.lock"):
        if encoder is None:
            weights = weights or (weights_from_manifest(db.manifest()) if db.exists() else None)
            encoder = load_encoder(weights, device=device, exact=exact)
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
        run = _Run(db, encoder, rows, plan.missing, report, batch_size)
        run.read_all(plan.to_read, workers or min(4, os.cpu_count() or 1), progress)
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


@dataclass
class _Read:
    """What a reader thread made of one file."""

    file: ScannedFile
    row: RowState | None
    content_hash: str | None = None
    tensor: object = None
    info: ImageInfo | None = None
    error: ImageLoadError | None = None


class _Run:
    """The serial half of a run: decisions, batching, model calls and commits."""

    def __init__(self, store: Store, encoder: Encoder, rows: dict[str, RowState],
                 missing: dict[int, RowState], report: IndexReport, batch_size: int):
        self.store, self.encoder, self.report = store, encoder, report
        self.batch_size = batch_size
        self.missing = missing
        # content hash -> id of a committed row whose embedding is that content's
        self.hashes = {r.content_hash: r.id for r in rows.values() if r.status == "ok" and r.content_hash}
        self.batch: list[_Read] = []
        self.ops: list[Callable] = []
        self.last_commit = time.monotonic()

    def read_all(self, items, workers: int, progress: Progress | None) -> None:
        """Progress counts files whose outcome is committed, so the bar never runs ahead."""
        total = len(items)
        with ThreadPoolExecutor(workers, thread_name_prefix="vitsearch-read") as pool:
            for decided, item in enumerate(_ordered(pool, self._read, items, 2 * self.batch_size), 1):
                self._decide(item)
                if len(self.batch) >= self.batch_size or self._commit_due():
                    self.flush()
                    if progress:
                        progress(decided - len(self.batch), total)
        self.flush()
        if progress:
            progress(total, total)

    def _read(self, work: tuple[ScannedFile, RowState | None], decode: bool = False) -> _Read:
        file, row = work
        item = _Read(file, row)
        try:
            data = read_image_bytes(file.path)
            item.content_hash = hashlib.blake2b(data, digest_size=16).hexdigest()
            if not decode and (item.content_hash in self.hashes or _same_content(row, item.content_hash)):
                return item  # the embedding can be reused: skip decoding
            loaded = load_image(data, draft_size=self.encoder.draft_size)
            item.tensor, item.info = self.encoder.preprocess(loaded.image), loaded.info
        except ImageLoadError as e:
            item.error = e
        except Exception as e:  # noqa: BLE001 - one bad file must never stop the run
            item.error = ImageLoadError("internal", f"{type(e).__name__}: {e}")
        return item

    def _decide(self, item: _Read) -> None:
        row, f = item.row, item.file
        if item.error is not None:
            self._fail(item, item.error.reason, item.error.detail)
        elif _same_content(row, item.content_hash):
            self.ops.append(lambda tx: tx.touch(row.id, f.size, f.mtime_ns))
            self.report.unchanged += 1
        elif item.content_hash in self.hashes:
            self._reuse(item, self.hashes[item.content_hash])
        elif item.tensor is None:  # its twin was rewritten since the read: decode after all
            self._decide(self._read((f, row), decode=True))
        else:
            self.batch.append(item)

    def _reuse(self, item: _Read, source_id: int) -> None:
        row, f = item.row, item.file
        self._forget(row)
        if source_id in self.missing:  # renamed or moved: the row follows the file
            self.missing.pop(source_id)
            if row is not None:
                self.ops.append(lambda tx: tx.delete([row.id]))
            self.ops.append(lambda tx: tx.move(source_id, f.path, f.root, f.size, f.mtime_ns))
            self.report.moved += 1
        else:  # a copy: same bytes under another path
            self.ops.append(lambda tx: tx.copy(source_id, row.id if row else None, f.path, f.root, f.size, f.mtime_ns))
            self._count_write(row)

    def _fail(self, item: _Read, reason: str, detail: str) -> None:
        self.ops.append(self._failure_op(item, reason, detail))

    def _failure_op(self, item: _Read, reason: str, detail: str) -> Callable:
        """Count a failed file and return the write that records it."""
        row, f = item.row, item.file
        self._forget(row)
        self.report.failed += 1
        self.report.failures.append(FileFailure(f.path, reason, detail))
        return lambda tx: tx.write_failure(row.id if row else None, f.path, f.root, f.size,
                                           f.mtime_ns, item.content_hash, reason, detail)

    def _forget(self, row: RowState | None) -> None:
        """A row about to be rewritten no longer vouches for its old content hash."""
        if row is not None and self.hashes.get(row.content_hash) == row.id:
            del self.hashes[row.content_hash]

    def _count_write(self, row: RowState | None) -> None:
        if row is None:
            self.report.added += 1
        else:
            self.report.updated += 1

    def _commit_due(self) -> bool:
        pending = self.batch or self.ops
        return bool(pending) and (
            len(self.ops) >= MAX_PENDING_OPS or time.monotonic() - self.last_commit > COMMIT_EVERY_SECONDS
        )

    def flush(self) -> None:
        """Embed the batch and commit it with the pending row operations, atomically."""
        embedded = self._embed_batch()
        if not embedded and not self.ops:
            return
        written: list[tuple[str, int]] = []
        with self.store.transaction() as tx:
            for op in self.ops:
                op(tx)
            for item, vector in embedded:
                f, row = item.file, item.row
                if vector is None:
                    self._failure_op(item, "bad_embedding", "the model produced NaN or Inf")(tx)
                    continue
                row_id = tx.write_image(row.id if row else None, f.path, f.root, f.size, f.mtime_ns,
                                        item.content_hash, item.info, vector)
                written.append((item.content_hash, row_id))
        for content_hash, row_id in written:
            self.hashes.setdefault(content_hash, row_id)
        self.ops.clear()
        self.last_commit = time.monotonic()

    def _embed_batch(self) -> list[tuple[_Read, np.ndarray | None]]:
        if not self.batch:
            return []
        import torch

        batch, self.batch = self.batch, []
        fault_point("embed")
        vectors = self.encoder.encode(torch.stack([torch.as_tensor(i.tensor) for i in batch]))
        finite = np.isfinite(vectors).all(axis=1)
        result = []
        for item, vector, ok in zip(batch, vectors, finite):
            self._forget(item.row)
            if ok:
                self._count_write(item.row)
            result.append((item, vector if ok else None))
        self.report.embedded += int(finite.sum())
        return result

    def remove_missing(self) -> None:
        if self.missing:
            ids = list(self.missing)
            with self.store.transaction() as tx:
                tx.delete(ids)
            self.report.removed += len(ids)
            self.missing.clear()


def _same_content(row: RowState | None, content_hash: str | None) -> bool:
    return row is not None and row.status == "ok" and row.content_hash == content_hash


def _ordered(pool: ThreadPoolExecutor, fn, items, window: int):
    """pool.map that keeps at most `window` results in flight, so memory stays flat."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()

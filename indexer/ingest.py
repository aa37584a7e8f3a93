"""Batching for an indexing run: reader threads feed decisions, batches go to the model, results
are committed in batched transactions. On a GPU one batch computes while the last commits."""

from __future__ import annotations

import hashlib
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .errors import ImageLoadError
from .faults import fault_point
from .imaging.images import ImageInfo, LoadedImage, load_image, read_image_bytes
from .imaging.signatures import Signature
from .model import compiled
from .model.encoder import Encoder
from .prefetch import Prefetch
from .records import read_records
from .report import FileFailure, IndexReport, Progress
from .scan import ScannedFile
from .store.store import RowState, Store

__all__ = ["IndexRun", "ReadFile", "default_workers", "prepare_image"]

COMMIT_EVERY_SECONDS = 5.0  # longest that decided work waits for its commit
EMBEDDED_COMMIT_SECONDS = 1.0  # embedded rows commit at most this often: fast GPUs batch them
MAX_PENDING_OPS = 512



@dataclass
class ReadFile:
    """What a reader made of one file."""

    file: ScannedFile
    row: RowState | None
    content_hash: str | None = None
    tensor: object = None
    info: ImageInfo | None = None
    signature: Signature | None = None
    error: ImageLoadError | None = None
    records: dict | None = None  # the photographer's records (indexer.records), read from the bytes held


class IndexRun:
    """The serial half of a run: decisions, batching, model calls and commits."""

    def __init__(self, store: Store, encoder: Encoder, rows: dict[str, RowState],
                 missing: dict[int, RowState], report: IndexReport, batch_size: int,
                 prefetch: Prefetch | None = None):
        self.store, self.encoder, self.report = store, encoder, report
        self.batch_size = batch_size
        self.missing = missing
        self.device_inputs = encoder.device_inputs
        # Files decoded while the model loaded, if decoded as this encoder decodes on the CPU.
        usable = prefetch is not None and self.device_inputs is None and prefetch.draft_size == encoder.draft_size
        if prefetch is not None and not usable:
            prefetch.cancel()
        self.prefetch = prefetch if usable else None
        # On a GPU one batch computes while the previous one is committed.
        self.max_in_flight = 1 if _on_cuda(encoder) else 0
        # content hash -> id of a committed row whose embedding is that content's
        self.hashes = {r.content_hash: r.id for r in rows.values() if r.status == "ok" and r.content_hash}
        self.batch: list[ReadFile] = []
        self.in_flight: deque[tuple[list[ReadFile], Callable[[], np.ndarray]]] = deque()
        self.embedded: list[tuple[ReadFile, np.ndarray | None]] = []
        self.ops: list[Callable] = []
        self.records: list[dict] = []  # rows' records, written with the commit that writes the rows
        self.last_commit = time.monotonic()
        self.to_embed = 0  # images decided for the model so far (not copies, renames or unchanged)

    def read_all(self, items, workers: int, progress: Progress | None) -> None:
        """Progress counts files whose outcome is committed, so the bar never runs ahead."""
        total = len(items)
        self._prepare_graph(min(total, compiled.COMPILE_MIN_IMAGES - 1))
        launch_at = self.encoder.first_batch_size(self.batch_size)  # then full batches
        with ThreadPoolExecutor(workers, thread_name_prefix="vitsearch-read") as pool:
            for decided, item in enumerate(_ordered(pool, self._read, items, 2 * self.batch_size), 1):
                self._decide(item)
                if len(self.batch) >= launch_at:
                    self._launch()
                    launch_at = self.batch_size
                if self._commit_due():
                    self.commit()
                    if progress:
                        progress("index", decided - len(self.batch) - sum(len(b) for b, _ in self.in_flight), total)
        self.flush()
        if self.prefetch is not None:
            self.prefetch.cancel()  # what the run did not read after all
        if progress:
            progress("index", total, total)

    def _read(self, work: tuple[ScannedFile, RowState | None], decode: bool = False) -> ReadFile:
        file, row = work
        item = ReadFile(file, row)
        try:
            early = self.prefetch.take(file.path) if self.prefetch is not None else None
            data = early[0] if early else read_image_bytes(file.path)
            item.content_hash = hashlib.blake2b(data, digest_size=16).hexdigest()
            item.records = read_records(file, data)
            if not decode and (item.content_hash in self.hashes or _same_content(row, item.content_hash)):
                return item  # the embedding can be reused: skip decoding
            if early:
                item.tensor, item.info, item.signature = finish_image(early[1], self.encoder.preprocess)
            else:
                item.tensor, item.info, item.signature = self._prepare(data)
        except ImageLoadError as e:
            item.error = e
        except Exception as e:  # noqa: BLE001 - one bad file must never stop the run
            item.error = ImageLoadError("internal", f"{type(e).__name__}: {e}")
        return item

    def _prepare(self, data: bytes):
        """The model input, facts and signatures of one file. On a GPU a JPEG stays encoded until
        the batch, and its signatures are filled in after the run (see indexer.backfill)."""
        if self.device_inputs is not None:
            return (*self.device_inputs.prepare(data), None)
        return prepare_image(data, self.encoder.preprocess, self.encoder.draft_size)

    def _decide(self, item: ReadFile) -> None:
        if self.follow(item):
            return
        if item.tensor is None:  # its twin was rewritten since the read: decode after all
            self._decide(self._read((item.file, item.row), decode=True))
        else:
            self.batch.append(item)
            self.to_embed += 1
            if self.to_embed == compiled.COMPILE_MIN_IMAGES:
                self._prepare_graph(self.to_embed)

    def follow(self, item: ReadFile) -> bool:
        """Record what needs no model (a failure, unchanged content, a copy, a rename) and say
        whether that was all; else the item's content must be embedded."""
        row, f = item.row, item.file
        if item.error is not None:
            self._fail(item, item.error.reason, item.error.detail)
        elif _same_content(row, item.content_hash):
            revive = row.status == "quarantined"  # a quarantined file is back where it was
            self._op(item, lambda tx: tx.touch(row.id, f.size, f.mtime_ns, revive=revive))
            self.report.unchanged += 1
        elif item.content_hash in self.hashes:
            self._reuse(item, self.hashes[item.content_hash])
        else:
            return False
        return True

    def _prepare_graph(self, images: int) -> None:
        """Tell the encoder how many images this run embeds, for its compiled graph (see
        indexer.model.compiled). Before reading, a run knows only an upper bound (copies and renames
        reuse stored vectors): enough to load a cached graph (~0.1 s) for a run that may fill a
        batch, never to build one (~30-45 s: a burst of 1,000 copies set one up that a later
        60-file sync of the watcher paid for); that waits until COMPILE_MIN_IMAGES are decided
        for the model, and the build serves this run's later batches."""
        self.encoder.prepare_graph(images, self.batch_size)

    def _reuse(self, item: ReadFile, source_id: int) -> None:
        row, f = item.row, item.file
        self._forget(row)
        if source_id in self.missing:  # renamed or moved: the row follows the file
            if row is not None:
                self.ops.append(lambda tx: tx.delete([row.id]))
            old = self.missing.pop(source_id).path
            self._op(item, lambda tx: tx.move(source_id, f.path, f.root, f.size, f.mtime_ns))
            self.report.moved += 1
            self.report.changes.append(("moved", f"{old} -> {f.path}"))
        else:  # a copy: same bytes under another path
            self._op(item, lambda tx: tx.copy(source_id, row.id if row else None, f.path, f.root, f.size, f.mtime_ns))
            self._count_write(row, f.path)

    def _op(self, item: ReadFile, write: Callable) -> None:
        """A pending row write (returning the row's id) whose row then gets the item's records."""
        def run(tx):
            self._keep_records(item, write(tx))
        self.ops.append(run)

    def _keep_records(self, item: ReadFile, row_id: int) -> None:
        if item.records is not None:
            self.records.append({"id": row_id, **item.records})
            if item.records["records_note"]:
                self.report.record_notes.append((item.file.path, item.records["records_note"]))

    def _fail(self, item: ReadFile, reason: str, detail: str) -> None:
        self.ops.append(self._failure_op(item, reason, detail))

    def _failure_op(self, item: ReadFile, reason: str, detail: str) -> Callable:
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

    def _count_write(self, row: RowState | None, path: str) -> None:
        if row is None:
            self.report.added += 1
        else:
            self.report.updated += 1
        self.report.changes.append(("added" if row is None else "updated", path))

    def _commit_due(self) -> bool:
        since = time.monotonic() - self.last_commit
        if self.embedded and since >= EMBEDDED_COMMIT_SECONDS:
            return True
        return bool(self.ops or self.embedded) and (len(self.ops) >= MAX_PENDING_OPS or since > COMMIT_EVERY_SECONDS)

    def flush(self) -> None:
        """Embed everything batched or in flight and commit it."""
        self._launch()
        while self.in_flight:
            self._collect()
        self.commit()

    def _launch(self) -> None:
        """Start the model on the current batch; keep at most max_in_flight batches uncollected."""
        if self.batch:
            import torch

            batch, self.batch = self.batch, []
            fault_point("embed")
            batch, inputs = self._model_inputs(batch)
            if batch:
                self.in_flight.append((batch, self.encoder.launch(torch.stack(inputs))))
        while len(self.in_flight) > self.max_in_flight:
            self._collect()

    def _model_inputs(self, batch: list[ReadFile]) -> tuple[list[ReadFile], list]:
        """The batch's tensors, decoded on the device where it decodes; failures are recorded."""
        import torch

        if self.device_inputs is None:
            return batch, [torch.as_tensor(item.tensor) for item in batch]
        kept, inputs = [], []
        for item, result in zip(batch, self.device_inputs.finish([item.tensor for item in batch]), strict=False):
            item.tensor = None  # the encoded bytes are no longer needed
            if isinstance(result, ImageLoadError):
                self._fail(item, result.reason, result.detail)
            else:
                kept.append(item)
                inputs.append(result)
        return kept, inputs

    def _collect(self) -> None:
        """Wait for the oldest batch in flight; its vectors join the rows awaiting commit."""
        batch, wait = self.in_flight.popleft()
        vectors = wait()
        finite = np.isfinite(vectors).all(axis=1)
        for item, vector, ok in zip(batch, vectors, finite, strict=False):
            self._forget(item.row)
            if ok:
                self._count_write(item.row, item.file.path)
            self.embedded.append((item, vector if ok else None))
        self.report.embedded += int(finite.sum())

    def commit(self) -> None:
        """Write the pending row operations and embedded rows in one transaction."""
        if not self.embedded and not self.ops:
            return
        written: list[tuple[str, int]] = []
        with self.store.transaction() as tx:
            for op in self.ops:
                op(tx)
            for item, vector in self.embedded:
                f, row = item.file, item.row
                if vector is None:
                    self._failure_op(item, "bad_embedding", "the model produced NaN or Inf")(tx)
                    continue
                row_id = tx.write_image(row.id if row else None, f.path, f.root, f.size, f.mtime_ns,
                                        item.content_hash, item.info, vector, item.signature)
                written.append((item.content_hash, row_id))
                self._keep_records(item, row_id)
            tx.set_records(self.records)
            self.records.clear()
        for content_hash, row_id in written:
            self.hashes.setdefault(content_hash, row_id)
        self.ops.clear()
        self.embedded.clear()
        self.last_commit = time.monotonic()

    def remove_missing(self) -> None:
        if self.missing:
            ids = list(self.missing)
            with self.store.transaction() as tx:
                tx.delete(ids)
            self.report.removed += len(ids)
            self.report.changes += [("removed", row.path) for row in self.missing.values()]
            self.missing.clear()


def prepare_image(data: bytes, preprocess: Callable, draft_size: int | None):
    """One file's model input, facts and signatures: what every engine's decode step does."""
    return finish_image(load_image(data, draft_size=draft_size, signature=True), preprocess)


def finish_image(loaded: LoadedImage, preprocess: Callable):
    return preprocess(loaded.image), loaded.info, loaded.signature


def default_workers(encoder: Encoder) -> int:
    """Reader threads: on a CPU they share the cores with the model (up to 4 help overlap);
    on a GPU they are all the CPU work there is, so use every core."""
    cores = os.cpu_count() or 1
    return cores if _on_cuda(encoder) else min(4, cores)


def _on_cuda(encoder: Encoder) -> bool:
    return encoder.device.startswith("cuda")


def _same_content(row: RowState | None, content_hash: str | None) -> bool:
    return row is not None and row.status in ("ok", "quarantined") and row.content_hash == content_hash


def _ordered(pool: ThreadPoolExecutor, fn, items, window: int):
    """pool.map that keeps at most `window` results in flight, so memory stays flat."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()

"""Videos in an indexing run: each is hashed as a stream (never held in memory), then followed like
a photo (unchanged, renamed, copied: no decode), or sampled into frames that go through the same
model and preprocessing as a photo. A video's row, its embedding (its frames' normalised mean:
one hit per video) and its frames are written in one transaction."""

from __future__ import annotations

import hashlib
import os
import stat
import time

import numpy as np

from .errors import ImageLoadError, first_line
from .faults import fault_point
from .imaging.video import VideoSample, read_video, video_vector
from .ingest import IndexRun, ReadFile
from .report import Progress
from .scan import ScannedFile
from .store.store import RowState

__all__ = ["index_videos", "hash_file", "embed_frames"]

HASH_CHUNK = 1 << 20


def hash_file(path: str) -> str:
    """The content hash a photo gets from its bytes (blake2b-128), read a chunk at a time."""
    digest = hashlib.blake2b(digest_size=16)
    try:
        # O_NONBLOCK: a FIFO put in a video's place since the scan opens at once (and is refused
        # below) instead of waiting for a writer forever; a regular file ignores the flag.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ImageLoadError("unreadable", "not a regular file")
            while chunk := f.read(HASH_CHUNK):
                digest.update(chunk)
    except FileNotFoundError as e:
        raise ImageLoadError("vanished", "the file was removed before it could be read") from e
    except OSError as e:
        raise ImageLoadError("unreadable", e.strerror or str(e)) from e
    return digest.hexdigest()


def index_videos(run: IndexRun, items: list[tuple[ScannedFile, RowState | None]],
                 progress: Progress | None = None) -> None:
    """Bring these videos' rows up to date; each failure is recorded with its reason, never raised."""
    report = run.report
    started = time.perf_counter()
    for done, (file, row) in enumerate(items, 1):
        item = ReadFile(file, row)
        try:
            item.content_hash = hash_file(file.path)
        except ImageLoadError as e:
            item.error = e
        if not run.follow(item):
            _embed_video(run, item)
        run.commit()  # one video's work a transaction: a kill loses at most the video in hand
        if progress:
            progress("videos", done, len(items))
    report.video_seconds = round(report.video_seconds + time.perf_counter() - started, 3)


def _embed_video(run: IndexRun, item: ReadFile) -> None:
    try:
        sample = read_video(item.file.path, min_side=run.encoder.draft_size)
        frames = embed_frames(run.encoder, sample.images, run.batch_size)
    except ImageLoadError as e:
        run.ops.append(run._failure_op(item, e.reason, e.detail))
        return
    except Exception as e:  # noqa: BLE001 - one bad video must never stop the run
        run.ops.append(run._failure_op(item, "internal", f"{type(e).__name__}: {first_line(e)}"))
        return
    finite = np.isfinite(frames).all(axis=1)
    if not finite.all():
        run.ops.append(run._failure_op(item, "bad_embedding", "the model produced NaN or Inf"))
        return
    _write_video(run, item, sample, frames)


def embed_frames(encoder, images: list, batch_size: int) -> np.ndarray:
    """Unit vectors of these frames, as a photo's are made."""
    import torch

    fault_point("embed")
    vectors = []
    for start in range(0, len(images), batch_size):
        batch = torch.stack([torch.as_tensor(encoder.preprocess(image)) for image in images[start:start + batch_size]])
        vectors.append(encoder.launch(batch)())
    return np.concatenate(vectors).astype(np.float32)


def _write_video(run: IndexRun, item: ReadFile, sample: VideoSample, frames: np.ndarray) -> None:
    f, row = item.file, item.row
    run._forget(row)
    run._count_write(row, f.path)
    run.report.embedded_videos += 1
    run.report.frames += len(frames)

    def write(tx):
        row_id = tx.write_video(row.id if row else None, f.path, f.root, f.size, f.mtime_ns, item.content_hash,
                                sample.info, video_vector(frames), sample.times, frames)
        run.hashes.setdefault(item.content_hash, row_id)

    run.ops.append(write)

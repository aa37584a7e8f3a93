"""Videos in an indexing run: each is hashed as a stream (never held in memory), then followed like
a photo (unchanged, renamed, copied: no decode), or sampled into frames that go through the same
model and preprocessing as a photo, the next video read while this one's frames are embedded. A
video's row, its embedding (its frames' normalised mean: one hit per video) and its frames are
written in one transaction."""

from __future__ import annotations

import hashlib
import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import ImageLoadError, first_line
from .faults import fault_point
from .imaging.video import VideoSample, read_video, video_vector
from .ingest import IndexRun, ReadFile
from .report import Progress
from .scan import ScannedFile
from .store.store import RowState

__all__ = ["index_videos", "hash_file", "embed_tensors"]

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


@dataclass
class _Read:
    """One video as the reading thread leaves it: hashed and, when its content is new, sampled
    and its frames preprocessed (or the reason it could not be)."""

    item: ReadFile
    sample: VideoSample | None = None
    tensors: list = field(default_factory=list)
    failure: tuple[str, str] | None = None  # (reason, detail) of a failed sample


def index_videos(run: IndexRun, items: list[tuple[ScannedFile, RowState | None]],
                 progress: Progress | None = None) -> None:
    """Bring these videos' rows up to date; each failure is recorded with its reason, never raised."""
    report = run.report
    started = time.perf_counter()
    # One video ahead: a thread hashes, samples and preprocesses the next video while this one's
    # frames go through the model (FFmpeg, Pillow and torch release the GIL). One after the other,
    # each decode ran against torch's OpenMP threads still spinning after the model call: 180 s of
    # 1080p (tests/bench/video_throughput.py) took twice the wall and CPU time. The thread holds
    # one more video's frames (at most MAX_FRAMES tensors).
    seen: set[str] = set()  # this run's hashes so far: a copy of a video before it is not sampled
    with ThreadPoolExecutor(1, thread_name_prefix="vitsearch-video") as reader:
        ahead = [reader.submit(_read, run, *items[0], seen)] if items else []
        for done in range(1, len(items) + 1):
            read = ahead.pop().result()
            if done < len(items):
                ahead.append(reader.submit(_read, run, *items[done], seen))
            if not run.follow(read.item):
                _embed_video(run, read)
            run.commit()  # one video's work a transaction: a kill loses at most the video in hand
            if progress:
                progress("videos", done, len(items))
    report.video_seconds = round(report.video_seconds + time.perf_counter() - started, 3)


def _read(run: IndexRun, file: ScannedFile, row: RowState | None, seen: set[str]) -> _Read:
    """The reading thread's part; it changes nothing of the run's (run.follow decides, later)."""
    read = _Read(ReadFile(file, row))
    try:
        content_hash = read.item.content_hash = hash_file(file.path)
    except ImageLoadError as e:
        read.item.error = e
        return read
    except Exception as e:  # noqa: BLE001 - raised here, it would end the run at .result()
        read.item.error = ImageLoadError("internal", f"{type(e).__name__}: {first_line(e)}")
        return read
    unchanged = row is not None and row.content_hash == content_hash
    followed = unchanged or content_hash in run.hashes or content_hash in seen
    seen.add(content_hash)
    if not followed:  # unchanged, renamed or copied content needs no decode; a wrong guess samples later
        _sample(read, run.encoder)
    return read


def _sample(read: _Read, encoder) -> None:
    try:
        sample = read_video(read.item.file.path, min_side=encoder.draft_size)
        read.tensors = [encoder.preprocess(image) for image in sample.images]
        read.sample = replace(sample, images=[])  # the tensors are what is kept
    except ImageLoadError as e:
        read.failure = (e.reason, e.detail)
    except Exception as e:  # noqa: BLE001 - one bad video must never stop the run
        read.failure = ("internal", f"{type(e).__name__}: {first_line(e)}")


def _embed_video(run: IndexRun, read: _Read) -> None:
    if read.sample is None and read.failure is None:
        _sample(read, run.encoder)  # the reading thread took it for a copy
    if read.failure is None:
        try:
            frames = embed_tensors(run.encoder, read.tensors, run.batch_size)
        except Exception as e:  # noqa: BLE001 - one bad video must never stop the run
            read.failure = ("internal", f"{type(e).__name__}: {first_line(e)}")
    if read.failure is not None:
        run.ops.append(run._failure_op(read.item, *read.failure))
        return
    finite = np.isfinite(frames).all(axis=1)
    if not finite.all():
        run.ops.append(run._failure_op(read.item, "bad_embedding", "the model produced NaN or Inf"))
        return
    _write_video(run, read.item, read.sample, frames)


def embed_tensors(encoder, tensors: list, batch_size: int) -> np.ndarray:
    """Unit vectors of these preprocessed frames, as a photo's are made."""
    import torch

    fault_point("embed")
    vectors = []
    for start in range(0, len(tensors), batch_size):
        batch = torch.stack([torch.as_tensor(t) for t in tensors[start:start + batch_size]])
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

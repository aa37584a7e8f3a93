"""Videos in a search: an image query is compared with every stored frame, and a video scores as
its best frame, at that frame's time (a screenshot or an exported still finds its clip and the
moment). The frames of live videos are held in memory per store generation, brute force: exact,
and 64 frames per video keep it small (10,000 videos are ~1.3 GB at 512 dims in float32)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..indexer.imaging.video import read_video, video_vector
from ..indexer.store.store import LIVE, Store

__all__ = ["FrameTable", "load_frames", "best_frames", "sample_video", "format_time"]


@dataclass(frozen=True)
class FrameTable:
    """The frames of live videos, grouped by video in id order."""

    ids: np.ndarray  # (videos,) the video ids, ascending
    starts: np.ndarray  # (videos,) where each video's frames begin
    times: np.ndarray  # (frames,) seconds
    vectors: np.ndarray  # (frames, dim) unit vectors

    def __len__(self) -> int:
        return len(self.times)


def load_frames(store: Store) -> FrameTable | None:
    """The frames of every live video; None when the store holds none."""
    with store.connect() as con:
        result = con.execute(
            f"SELECT video_id, t, embedding FROM frames WHERE video_id IN (SELECT id FROM images WHERE {LIVE}) "
            "ORDER BY video_id, t").fetchnumpy()
    video_ids = np.asarray(result["video_id"], np.int64)
    if not len(video_ids):
        return None
    ids, starts = np.unique(video_ids, return_index=True)
    return FrameTable(ids, starts, np.asarray(result["t"], np.float32),
                      np.stack(result["embedding"]).astype(np.float32))


def best_frames(table: FrameTable, query: np.ndarray, allowed: np.ndarray | None = None
                ) -> dict[int, tuple[float, float]]:
    """video id -> (best frame's cosine with `query`, its time), for videos in `allowed` (None: all)."""
    scores = table.vectors @ query.astype(np.float32)
    best = np.maximum.reduceat(scores, table.starts)
    group = np.repeat(np.arange(len(table.ids)), np.diff(np.append(table.starts, len(scores))))
    first_best = np.flatnonzero(scores >= best[group])
    _, first = np.unique(group[first_best], return_index=True)  # the earliest frame at the best score
    times = table.times[first_best[first]]
    keep = np.ones(len(table.ids), bool) if allowed is None else np.isin(table.ids, allowed)
    return {int(i): (float(s), float(t)) for i, s, t, k in zip(table.ids, best, times, keep, strict=True) if k}


def sample_video(path: str, encoder, batch_size: int = 16) -> np.ndarray:
    """A video file that is not indexed, as a query: the normalised mean of its sampled frames,
    each made as a photo's embedding is."""
    import torch

    sample = read_video(path, min_side=encoder.draft_size)
    vectors = [encoder.encode(torch.stack([torch.as_tensor(encoder.preprocess(image))
                                           for image in sample.images[start:start + batch_size]]))
               for start in range(0, len(sample.images), batch_size)]
    return video_vector(np.concatenate(vectors).astype(np.float32))


def format_time(seconds: float | None) -> str:
    """00:42.5, or 1:02:03.0 past an hour."""
    if seconds is None:
        return ""
    minutes, rest = divmod(max(0.0, float(seconds)), 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{rest:04.1f}" if hours else f"{minutes:02d}:{rest:04.1f}"

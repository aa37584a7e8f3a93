"""Video duplicates at scale: search.video_dupes.footage_edges over N synthetic videos of up to 64
frames (shots drawn from clustered unit vectors, a drift within each shot; `--spread` sets how
alike shots of one cluster are, 0.5: cosine ~0.8, near the similar threshold), with 5% re-encodes
(frame noise) and 5% trims (the middle 60%) planted. Prints seconds (the frame k-NN that
proposes pairs, and the whole), the candidate pairs judged, the pairs of one footage found near
(recall) and the near pairs of different footage (false), as JSON lines.

    python -m tests.bench.video_dupes_bench --videos 2000
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from tests.bench.search_bench import emit
from tests.bench.synthetic import clustered_unit_vectors
from vitsearch.search.video_dupes import _candidate_pairs, footage_edges, frame_thresholds
from vitsearch.search.video_frames import FrameTable


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def synthetic_library(videos: int, dim: int, spread: float, seed: int = 0):
    """(FrameTable, facts, each video's footage): originals of 8-64 frames, then re-encodes and
    trims of some."""
    rng = np.random.default_rng(seed)
    shots = clustered_unit_vectors(videos * 6, dim, clusters=max(videos // 4, 1), spread=spread, seed=seed)
    clips, footage = [], []
    originals = int(videos * 0.9)
    for v in range(originals):
        frames = int(rng.integers(8, 65))
        cut = np.sort(rng.integers(0, 6, frames))  # which of its six shots each frame shows
        drift = rng.standard_normal((frames, dim)).astype(np.float32) * 0.25 / np.sqrt(dim)
        clips.append((_unit(shots[v * 6 + cut] + drift), float(frames * 2)))
        footage.append(v)
    for n in range(videos - originals):
        source = int(rng.integers(0, originals))
        vectors, duration = clips[source]
        if n % 2:  # a re-encode: noise on every frame, and the other instants of a shot
            noise = rng.standard_normal(vectors.shape).astype(np.float32) * 0.3 / np.sqrt(dim)
            clips.append((_unit(vectors + noise), duration))
        else:  # the middle 60%
            lo, hi = int(len(vectors) * 0.2), max(int(len(vectors) * 0.8), int(len(vectors) * 0.2) + 1)
            clips.append((vectors[lo:hi], duration * 0.6))
        footage.append(source)
    counts = np.array([len(v) for v, _ in clips])
    table = FrameTable(np.arange(1, len(clips) + 1, dtype=np.int64), np.concatenate([[0], np.cumsum(counts)[:-1]]),
                       np.concatenate([np.arange(c, dtype=np.float32) * 2 for c in counts]),
                       np.concatenate([v for v, _ in clips]))
    facts = {i + 1: {"content_hash": f"h{i}", "duration": d, "path": f"/v/{i}.mp4"} for i, (_, d) in enumerate(clips)}
    return table, facts, footage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--near", type=float, default=0.95)
    parser.add_argument("--similar", type=float, default=0.85)
    parser.add_argument("--spread", type=float, default=0.5)
    args = parser.parse_args()
    table, facts, footage = synthetic_library(args.videos, args.dim, args.spread)
    of = dict(zip(table.ids.tolist(), footage, strict=True))
    by_footage: dict[int, list[int]] = {}
    for i, f in of.items():
        by_footage.setdefault(f, []).append(i)
    same = {(a, b) for ids in by_footage.values() for n, a in enumerate(ids) for b in ids[n + 1:]}
    started = time.perf_counter()
    candidates = _candidate_pairs(table, frame_thresholds(args.near, args.similar)[1])
    knn = time.perf_counter() - started
    started = time.perf_counter()
    edges = footage_edges(table, facts, near=args.near, similar=args.similar)
    total = time.perf_counter() - started
    near = {(int(a), int(b)) for a, b, n in zip(edges.a, edges.b, edges.near, strict=True) if n}
    emit(videos=args.videos, frames=len(table), dim=args.dim, spread=args.spread, knn_s=round(knn, 2),
         total_s=round(total, 2), candidate_pairs=len(candidates), same_footage=len(same),
         found=len(same & near), false=len(near - same))


if __name__ == "__main__":
    main()

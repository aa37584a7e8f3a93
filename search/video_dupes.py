"""Video duplicates: pairs of videos whose sampled frames match in time order (a re-encode, a
resize, a trim or a crop of the same footage), found by a k-NN over all frames and judged pair by
pair by brute force; and each member's relation to its keeper (identical, near, similar) with the
reason. Photos are never compared with videos here (docs/videos-dupes.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..indexer.store.store import LIVE, Store
from .tiers import Member
from .video_frames import FrameTable

__all__ = ["Footage", "FootageMatch", "VideoEdges", "video_ids", "video_edges", "footage_edges", "frame_thresholds",
           "compare_footage", "classify_videos", "suggested_video_keeper", "longest", "VIDEO_FACTS"]

# A re-encode's frames are sampled at other instants than its original's (other keyframes), so a
# frame or two of the shorter video may find no match; a trim's frames all do.
NEAR_FRACTION = 0.8  # of the shorter video's frames matched in time order
SIMILAR_FRACTION = 0.5  # of its frames alike to some frame of the other, in any order
MIN_MATCHED = 2  # one matching frame is a look-alike moment, not the same footage
LENGTH_MARGIN = 0.99  # lengths this close are one length: containers end a clip a frame apart
QUERY_FRAMES = 8  # per video, spread over its length: the k-NN that proposes pairs
OTHER_FRAMES = 32  # other videos' frames kept per query frame, past the video's own
_IDENTICAL_WEIGHT = 2.0  # above any footage score: a veto splits a group keeping the strongest edges

# What classifying and keeping a video needs of its row.
VIDEO_FACTS = ("path, path_bytes, content_hash, size, mtime_ns, coalesce(duration, 0) AS duration, "
               "coalesce(width * height, 0) AS pixels, coalesce(bitrate, 0) AS bitrate, rating, pick")


@dataclass(frozen=True)
class Footage:
    """One video's sampled frames, in time order, and its length."""

    times: np.ndarray
    vectors: np.ndarray
    duration: float


@dataclass(frozen=True)
class FootageMatch:
    """How the shorter of two videos' frames match the longer's."""

    matched: int  # frames of the shorter matched in time order (at the match threshold)
    frames: int  # frames of the shorter
    alike: int  # frames of the shorter alike to some frame of the longer (at the similar threshold)
    score: float  # the mean of each of the shorter's frames' best cosine in the longer
    duration_ratio: float | None  # shorter / longer length; None when one is unknown
    first_is_shorter: bool

    @property
    def near(self) -> bool:
        return self.matched >= NEAR_FRACTION * self.frames and self.matched >= min(MIN_MATCHED, self.frames)

    @property
    def similar(self) -> bool:
        return self.alike >= SIMILAR_FRACTION * self.frames and self.alike >= min(MIN_MATCHED, self.frames)

    def describe(self, counted: str = "matched") -> str:
        """'48 of 52 frames matched, duration 0.98'."""
        count = self.matched if counted == "matched" else self.alike
        length = f", duration {self.duration_ratio:.2f}" if self.duration_ratio is not None else ""
        return f"{count} of {self.frames} frames {counted}{length}"


@dataclass(frozen=True)
class VideoEdges:
    """Edges between videos (a < b): weights (identical above any match) and which are near."""

    a: np.ndarray
    b: np.ndarray
    weights: np.ndarray
    near: np.ndarray  # bool: identical or near; the others are similar
    footage: dict[int, Footage]
    facts: dict[int, dict]


def video_ids(store: Store) -> np.ndarray:
    """The live videos' ids, ascending: rows a photo's grouping leaves out."""
    with store.connect() as con:
        ids = con.execute(f"SELECT id FROM images WHERE {LIVE} AND kind = 'video' ORDER BY id").fetchnumpy()["id"]
    return np.asarray(ids, np.int64)


def frame_thresholds(near: float, similar: float) -> tuple[float, float]:
    """(match, alike): a frame matches another at twice the photo near threshold's distance from 1
    (sampled frames are moments apart, a copy's are not: 0.90 for near 0.95); alike as a similar
    photo is."""
    return max(2 * near - 1, similar), similar


def video_edges(store: Store, table: FrameTable | None, *, near: float, similar: float,
                loose: bool = True) -> VideoEdges:
    """Identical (same bytes), near and, if `loose`, similar edges between the live videos."""
    facts = store.records_by_id(VIDEO_FACTS, table.ids.tolist()) if table is not None else {}
    return footage_edges(table, facts, near=near, similar=similar, loose=loose)


def footage_edges(table: FrameTable | None, facts: dict[int, dict], *, near: float, similar: float,
                  loose: bool = True) -> VideoEdges:
    """video_edges over frames and facts in hand (each video's content_hash and duration at least)."""
    match, alike = frame_thresholds(near, similar)
    footage = _footage(table, facts) if facts else {}
    pairs = _candidate_pairs(table, alike if loose else match) if footage else set()
    pairs |= _same_bytes(facts)
    edges = []
    for a, b, found in _judged(pairs, footage, facts, match, alike):
        if found is None:
            edges.append((a, b, _IDENTICAL_WEIGHT, True))
        elif found.near or (loose and found.similar):
            edges.append((a, b, found.score, found.near))
    a, b, w, n = (np.asarray(c) for c in zip(*edges, strict=True)) if edges else ([],) * 4
    return VideoEdges(np.asarray(a, np.int64), np.asarray(b, np.int64), np.asarray(w, np.float32),
                      np.asarray(n, bool), footage, facts)


def compare_footage(first: Footage, second: Footage, match: float, alike: float) -> FootageMatch:
    """The shorter video's frames (the one with fewer frames when lengths tie) against the longer's."""
    return _judge(first.vectors @ second.vectors.T, first, second, match, alike)


def classify_videos(members: list[int], keeper: int, edges: VideoEdges, *, near: float, similar: float,
                    level: str) -> list[Member]:
    """Members in group order, each with its relation to the keeper; `level` as for photos
    (search.tiers.classify_members): a member chained in through another inherits it."""
    match, alike = frame_thresholds(near, similar)
    facts, result = edges.facts, []
    for i in members:
        path = facts[i]["path"]
        if i == keeper:
            result.append(Member(i, path, 1.0, "identical", None, "the keeper", True))
        elif facts[i]["content_hash"] == facts[keeper]["content_hash"]:
            result.append(Member(i, path, 1.0, "identical", None, "same bytes as the keeper"))
        else:
            found = compare_footage(edges.footage[i], edges.footage[keeper], match, alike)
            result.append(Member(i, path, found.score, *_relation(found, level)))
    return result


def suggested_video_keeper(members: list[int], facts: dict[int, dict]) -> int:
    """The photographer's pick or best rating, then the longest (a trim is not kept over its
    source), the most pixels, the highest bitrate, the oldest file, the shortest path."""
    standing = {m: _standing(facts[m]) for m in members}
    top = max(standing.values())
    candidates = longest({m: facts[m] for m in members if standing[m] == top})
    return max(candidates, key=lambda m: (facts[m]["pixels"], facts[m]["bitrate"], -facts[m]["mtime_ns"],
                                          -len(facts[m]["path"]), -m))


def longest(facts: dict[int, dict]) -> list[int]:
    """The ids whose duration is the longest, within LENGTH_MARGIN (photos have none: all tie)."""
    most = max(f["duration"] or 0 for f in facts.values())
    return [i for i, f in facts.items() if (f["duration"] or 0) >= LENGTH_MARGIN * most]


# ---- internals ----

def _relation(found: FootageMatch, level: str) -> tuple[str, None, str]:
    if found.near:
        part = ""
        if found.duration_ratio is not None and found.duration_ratio < LENGTH_MARGIN:
            part = ": a part of the keeper" if found.first_is_shorter else ": the keeper is a part of it"
        return "near", None, f"near-duplicate: {found.describe()}{part}"
    if level == "near":
        return "near", None, f"near-duplicate of another member ({found.describe()} with the keeper)"
    return "similar", None, f"visually similar: {found.describe('alike')}"


def _judged(pairs: set[tuple[int, int]], footage: dict[int, Footage], facts: dict[int, dict], match: float,
            alike: float):
    """(a, b, FootageMatch, or None for the same bytes) per pair: one product of a video's frames
    with all its partners' (tiny products one by one spend their time waiting on BLAS threads)."""
    partners: dict[int, list[int]] = {}
    for a, b in sorted(pairs):
        if a in footage and b in footage:
            partners.setdefault(a, []).append(b)
    for a, others in partners.items():
        scores = footage[a].vectors @ np.concatenate([footage[b].vectors for b in others]).T
        bounds = np.cumsum([0] + [len(footage[b].times) for b in others])
        for b, low, high in zip(others, bounds[:-1], bounds[1:], strict=True):
            same = facts[a]["content_hash"] == facts[b]["content_hash"]
            yield a, b, None if same else _judge(scores[:, low:high], footage[a], footage[b], match, alike)


def _judge(scores: np.ndarray, first: Footage, second: Footage, match: float, alike: float) -> FootageMatch:
    """compare_footage from the cosines of first's frames (rows) with second's (columns)."""
    first_is_shorter = (first.duration, len(first.times)) <= (second.duration, len(second.times))
    short, long = (first, second) if first_is_shorter else (second, first)
    scores = scores if first_is_shorter else scores.T
    best = scores.max(axis=1)
    ratio = short.duration / long.duration if short.duration > 0 and long.duration > 0 else None
    return FootageMatch(_in_order(scores >= match), len(short.times), int((best >= alike).sum()),
                        round(float(best.mean()), 6), ratio, first_is_shorter)


def _in_order(matches: np.ndarray) -> int:
    """The most rows (the shorter's frames, in time order) that can each take a matching column
    (the longer's frames) with the columns in non-decreasing order: frames matched in time order.
    A column may serve several rows: the longer video may be sampled more sparsely."""
    matches = matches[matches.any(axis=1)]  # a row without a match changes nothing
    best = np.zeros(matches.shape[1], np.int64)  # best[j]: most rows matched so far, the last at a column <= j
    for row in matches:
        best = np.maximum.accumulate(np.maximum(best, np.where(row, best + 1, 0)))
    return int(best[-1]) if len(best) else 0


def _footage(table: FrameTable, facts: dict[int, dict]) -> dict[int, Footage]:
    ends = np.append(table.starts[1:], len(table.times))
    return {int(i): Footage(table.times[s:e], table.vectors[s:e], float(facts[int(i)]["duration"]))
            for i, s, e in zip(table.ids, table.starts, ends, strict=True) if int(i) in facts}


def _candidate_pairs(table: FrameTable, threshold: float) -> set[tuple[int, int]]:
    """Pairs of videos (a < b) where a frame of one has a frame of the other among its nearest,
    at `threshold` or above: QUERY_FRAMES frames of each video, spread over its length, are
    searched among all frames, exactly (a flat inner-product index)."""
    import faiss

    counts = np.diff(np.append(table.starts, len(table.times)))
    owner = np.repeat(table.ids, counts)
    queries = np.concatenate([start + np.unique(np.linspace(0, n - 1, min(n, QUERY_FRAMES)).round().astype(np.int64))
                              for start, n in zip(table.starts, counts, strict=True)])
    index = faiss.IndexFlatIP(table.vectors.shape[1])
    index.add(np.ascontiguousarray(table.vectors))
    k = int(min(len(table), counts.max() + OTHER_FRAMES))
    scores, found = index.search(np.ascontiguousarray(table.vectors[queries]), k)
    a, b = np.repeat(owner[queries], k), owner[np.maximum(found.ravel(), 0)]
    keep = (found.ravel() >= 0) & (scores.ravel() >= threshold) & (a != b)
    a, b = a[keep], b[keep]
    return set(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist(), strict=True))


def _same_bytes(facts: dict[int, dict]) -> set[tuple[int, int]]:
    """Chains of videos that share a content hash: byte copies are linked whatever the frame
    search proposes."""
    by_hash: dict[str, list[int]] = {}
    for i in sorted(facts):
        if facts[i]["content_hash"]:
            by_hash.setdefault(facts[i]["content_hash"], []).append(i)
    return {(x, y) for same in by_hash.values() for x, y in zip(same, same[1:], strict=False)}


def _standing(fact: dict) -> tuple[bool, int]:
    rating = -1 if fact["pick"] == "rejected" else (fact["rating"] or 0)
    return fact["pick"] == "picked", rating

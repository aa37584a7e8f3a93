"""Threshold calibration: sample neighbour pairs across score bands for the user to label
(same photo or not), then fit the near-duplicate threshold those labels support."""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..indexer.store.decisions import read_decisions
from .dupes import _edges
from .index import ImageIndex

__all__ = ["CalibrationPair", "sample_pairs", "fit_near_threshold", "BANDS"]

BANDS = ((0.70, 0.80), (0.80, 0.85), (0.85, 0.90), (0.90, 0.93), (0.93, 0.95), (0.95, 0.97), (0.97, 0.99),
         (0.99, 1.01))


@dataclass(frozen=True)
class CalibrationPair:
    a: int
    b: int
    path_a: str
    path_b: str
    score: float


def sample_pairs(index: ImageIndex, per_band: int = 3, seed: int = 0) -> list[CalibrationPair]:
    """Up to `per_band` neighbour pairs from each score band, lowest band first."""
    a, b, scores = _edges(index, BANDS[0][0], read_decisions(index.store).not_duplicates)
    chooser = random.Random(seed)
    picked = []
    for low, high in BANDS:
        inside = [n for n in range(len(scores)) if low <= scores[n] < high]
        picked += chooser.sample(inside, min(per_band, len(inside)))
    paths = index.store.records_by_id("path", sorted({int(a[n]) for n in picked} | {int(b[n]) for n in picked}))
    return [CalibrationPair(int(a[n]), int(b[n]), paths[int(a[n])]["path"], paths[int(b[n])]["path"],
                            round(float(scores[n]), 4)) for n in picked]


def fit_near_threshold(labels: list[tuple[float, bool]]) -> float | None:
    """The cut that gets the most labels right (pairs at or above it "same"), placed midway
    between the labelled scores on either side; None without both kinds of label."""
    if not any(same for _, same in labels) or all(same for _, same in labels):
        return None
    ordered = sorted(labels)
    scores = [s for s, _ in ordered]
    best_cut, best_right = None, -1
    for n in range(len(ordered) + 1):
        right = sum(not same for _, same in ordered[:n]) + sum(same for _, same in ordered[n:])
        if right > best_right:
            best_right = right
            low = scores[n - 1] if n else scores[0] - 0.01
            high = scores[n] if n < len(scores) else min(1.0, scores[-1] + 0.01)
            best_cut = (low + high) / 2
    return round(min(max(best_cut, 0.0), 1.0), 4)

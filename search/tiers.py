"""Each group member's relation to its keeper, with the reason: same bytes, same pixels, a
rotated or mirrored copy, a near-duplicate, a similar shot, or a burst from the same camera."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np

from ..indexer.imaging.signatures import hamming, transformed_hashes
from .signature_edges import LAYOUT_BITS, MAX_TRANSFORM_BITS, TRANSFORM_NAMES

__all__ = ["Member", "TIERS", "BURST_SECONDS", "classify_members", "group_tier", "group_reason"]

# Loosest last: a group's tier is its loosest member's. Bursts stand apart (never auto-resolved), and so
# do hard links: one file under several names, never a copy to move.
TIERS = ("identical", "same-pixels", "near", "similar", "burst", "hardlink")
BURST_SECONDS = 10  # frames of one burst, or a short series, are seconds apart


@dataclass(frozen=True)
class Member:
    id: int
    path: str
    score: float  # cosine similarity to the keeper (1.0 for the keeper itself)
    tier: str  # relation to the keeper, one of TIERS; the keeper itself is "identical"
    transform: str | None  # the rotation/mirror T with T(this image) ~ the keeper, or None
    reason: str
    keeper: bool = False
    suspected_upscale: bool = False  # more pixels than another member, clearly less detail in them


def classify_members(ids: list[int], keeper: int, facts: dict[int, dict], cosines: dict[int, float], *,
                     near: float, level: str, partners: tuple[int, ...] = ()) -> list[Member]:
    """Members in group order. `facts` holds each id's path, content_hash, pixel_hash,
    orientation_hash, camera and captured_at; `level` is "near" or "similar", the component kind
    the group came from (a member chained in through another member inherits it)."""
    k = facts[keeper]
    members = []
    for i in ids:
        f, score = facts[i], round(float(cosines.get(i, 1.0)), 6)
        if i == keeper:
            members.append(Member(i, f["path"], 1.0, "identical", None, "the keeper", True))
            continue
        tier, transform, reason = _relation(f, k, score, near, level)
        if i in partners:
            reason = "the keeper's RAW/JPEG partner: the same shot, kept with it"
        members.append(Member(i, f["path"], score, tier, transform, reason))
    return members


def _relation(f: dict, k: dict, score: float, near: float, level: str) -> tuple[str, str | None, str]:
    if f["content_hash"] == k["content_hash"]:
        return "identical", None, "same bytes as the keeper"
    if f["pixel_hash"] is not None and f["pixel_hash"] == k["pixel_hash"]:
        return "same-pixels", None, "same decoded pixels as the keeper in a different file"
    seconds = _seconds_apart(f, k)
    if seconds is not None and 0 < seconds <= BURST_SECONDS:
        return "burst", None, f"same camera ({k['camera']}), taken {seconds:g} s apart: a burst, not a copy"
    transform = _transform_onto(f["orientation_hash"], k["orientation_hash"])
    if transform is not None:
        return "near", transform, f"the keeper after {transform} (orientation signatures match)"
    if score >= near:
        return "near", None, f"near-duplicate: cosine {score:.3f} to the keeper"
    layout = _bits_apart(f["orientation_hash"], k["orientation_hash"])
    if layout is not None and layout <= LAYOUT_BITS:
        return "near", None, f"near-duplicate: same layout ({layout} bits apart), cosine {score:.3f}: a crop or edit"
    if level == "near":
        return "near", None, f"near-duplicate of another member (cosine {score:.3f} to the keeper)"
    return "similar", None, f"visually similar: cosine {score:.3f} to the keeper"


def _seconds_apart(f: dict, k: dict) -> float | None:
    if not f["camera"] or f["camera"] != k["camera"]:
        return None
    a, b = f["captured_at"], k["captured_at"]
    if not isinstance(a, datetime) or not isinstance(b, datetime):
        return None
    return abs((a - b).total_seconds())


def _bits_apart(a, b) -> int | None:
    if a is None or b is None:
        return None
    return int(hamming(np.array([a], np.int64), np.array([b], np.int64))[0])


def _transform_onto(member_hash, keeper_hash) -> str | None:
    """The transform T with T(member) ~ keeper, when one matches better than none does."""
    if member_hash is None or keeper_hash is None:
        return None
    m, k = np.array([member_hash], np.int64), np.array([keeper_hash], np.int64)
    if hamming(m, k)[0] <= MAX_TRANSFORM_BITS:
        return None
    best = min(TRANSFORM_NAMES, key=lambda t: hamming(transformed_hashes(m, t), k)[0])
    return best if hamming(transformed_hashes(m, best), k)[0] <= MAX_TRANSFORM_BITS else None


def group_tier(members: list[Member], partners: tuple[int, ...] = ()) -> str:
    """The loosest relation among the non-keepers; "burst" when every one is a burst frame."""
    others = [m.tier for m in members if not m.keeper and m.id not in partners] or ["identical"]
    if all(t == "burst" for t in others):
        return "burst"
    return max((t for t in others if t != "burst"), key=TIERS.index)


def group_reason(members: list[Member], keeper_reason: str) -> str:
    counts: dict[str, int] = {}
    for m in members:
        if not m.keeper:
            label = m.transform or m.tier
            counts[label] = counts.get(label, 0) + 1
    parts = ", ".join(f"{n} {label}" for label, n in sorted(counts.items(), key=lambda x: -x[1]))
    return f"{parts}; {keeper_reason}"


"""Duplicate groups in tiers (identical bytes, near-duplicates, similar) from a chunked k-NN
self-join over the index and connected components, so memory stays bounded by k per image."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..indexer.ann import search_parameters
from ..indexer.decisions import read_decisions
from ..indexer.store import Store
from .index import ImageIndex

__all__ = ["DuplicateGroup", "find_duplicates", "nearest_neighbour_scores", "TIERS", "NEAR_DEFAULT",
           "SIMILAR_DEFAULT"]

TIERS = ("identical", "near", "similar")
NEAR_DEFAULT = 0.95
SIMILAR_DEFAULT = 0.85
NEIGHBOURS = 16
CHUNK = 4096
DUPES_NPROBE_MAX = 16  # duplicates sit in the same or the next list: no need to probe deeper


@dataclass(frozen=True)
class DuplicateGroup:
    tier: str
    ids: tuple[int, ...]
    paths: tuple[str, ...]
    scores: tuple[float, ...]  # each member's best similarity to another member
    keeper: int  # the user's choice, else the suggestion
    keeper_decided: bool
    kept_with_keeper: tuple[int, ...] = ()  # the keeper's own RAW/JPEG partner: never a duplicate of it

    def to_record(self) -> dict:
        return asdict(self)


def find_duplicates(index: ImageIndex, *, near: float = NEAR_DEFAULT, similar: float = SIMILAR_DEFAULT,
                    tiers: tuple[str, ...] = TIERS) -> list[DuplicateGroup]:
    """Groups of each requested tier, honouring the user's recorded decisions."""
    similar = min(similar, near)
    rows = _rows(index.store)
    decisions = read_decisions(index.store)
    not_duplicates, keepers = decisions.not_duplicates, decisions.keepers
    pairs = index.pairs()
    groups: list[DuplicateGroup | None] = []
    if "identical" in tiers:
        by_hash: dict[str, list[int]] = {}
        for row_id, (_, content_hash, _) in rows.items():
            by_hash.setdefault(content_hash, []).append(row_id)
        for members in by_hash.values():
            if len(members) > 1:
                groups.append(_group("identical", sorted(members), {m: 1.0 for m in members}, rows, keepers, pairs))
    if {"near", "similar"} & set(tiers):
        a, b, scores = _edges(index, similar, not_duplicates)
        near_components = _components(a, b, scores >= near, scores, not_duplicates)
        best = _best_scores(a, b, scores)
        if "near" in tiers:
            groups += _tier_groups("near", near_components, best, rows, keepers, pairs, skip_identical=True)
        if "similar" in tiers:
            similar_components = _components(a, b, scores >= similar, scores, not_duplicates)
            known = {tuple(c) for c in near_components}
            fresh = [c for c in similar_components if tuple(c) not in known]
            groups += _tier_groups("similar", fresh, best, rows, keepers, pairs, skip_identical=False)
    return [g for g in groups if g is not None]


def nearest_neighbour_scores(index: ImageIndex) -> np.ndarray:
    """Each image's best similarity to another image: the distribution thresholds cut."""
    best = []
    for ids, vectors in index.store.embedding_chunks(CHUNK):
        scores, found = _search(index, vectors, 2)
        own = found == ids[:, None]
        best.append(np.where(own[:, 0], scores[:, 1], scores[:, 0]))
    return np.concatenate(best) if best else np.zeros(0, np.float32)


# ---- internals ----

def _rows(store: Store) -> dict[int, tuple]:
    """id -> (path, content_hash, keeper sort key) of live images."""
    records = store.records(
        "id, path, content_hash, coalesce(width * height, 0) AS pixels, size, "
        "(captured_at IS NOT NULL)::INT + (camera IS NOT NULL)::INT AS richness")
    return {r["id"]: (r["path"], r["content_hash"], (r["pixels"], r["size"], r["richness"], -r["id"]))
            for r in records}


def _search(index: ImageIndex, vectors: np.ndarray, k: int):
    params = search_parameters(index.vectors.index, index.vectors.choice, max_nprobe=DUPES_NPROBE_MAX)
    return index.vectors.index.search(vectors, min(k, len(index)), params=params)


def _edges(index: ImageIndex, threshold: float, not_duplicates: set[tuple[int, int]]):
    """Pairs (a < b) of neighbours scoring >= threshold, minus the user's 'not duplicates'."""
    parts_a, parts_b, parts_s = [], [], []
    for ids, vectors in index.store.embedding_chunks(CHUNK):
        scores, found = _search(index, vectors, NEIGHBOURS)
        a = np.repeat(ids, found.shape[1])
        b, s = found.ravel(), scores.ravel()
        keep = (b >= 0) & (a != b) & (s >= threshold)
        a, b, s = a[keep], b[keep], s[keep]
        parts_a.append(np.minimum(a, b))
        parts_b.append(np.maximum(a, b))
        parts_s.append(s)
    if not parts_a:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    a, b, s = np.concatenate(parts_a), np.concatenate(parts_b), np.concatenate(parts_s)
    order = np.lexsort((-s, b, a))
    a, b, s = a[order], b[order], s[order]
    first = np.ones(len(a), bool)
    first[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    a, b, s = a[first], b[first], s[first]
    if not_duplicates:
        vetoed = np.array([(int(x), int(y)) not in not_duplicates for x, y in zip(a, b, strict=False)], bool)
        a, b, s = a[vetoed], b[vetoed], s[vetoed]
    return a, b, s


def _components(a: np.ndarray, b: np.ndarray, mask: np.ndarray, scores: np.ndarray | None = None,
                cannot_link: set[tuple[int, int]] = frozenset()) -> list[list[int]]:
    """Connected components (size >= 2) of the edges a[mask]-b[mask]. A component holding a
    'not duplicates' pair is re-clustered so that the pair never shares a group."""
    a, b = a[mask], b[mask]
    weights = scores[mask] if scores is not None else np.ones(len(a), np.float32)
    if not len(a):
        return []
    nodes, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
    ea, eb = inverse[: len(a)], inverse[len(a):]
    labels = np.arange(len(nodes))
    while True:
        smaller = np.minimum(labels[ea], labels[eb])
        updated = labels.copy()
        np.minimum.at(updated, ea, smaller)
        np.minimum.at(updated, eb, smaller)
        updated = updated[updated]  # pointer jumping: follow labels to their roots
        if np.array_equal(updated, labels):
            break
        labels = updated
    groups: dict[int, list[int]] = {}
    for node, label in zip(nodes.tolist(), labels.tolist(), strict=False):
        groups.setdefault(label, []).append(node)
    result = []
    for members in groups.values():
        member_set = set(members)
        if cannot_link and any(x in member_set and y in member_set for x, y in cannot_link):
            inside = np.isin(a, members)
            result += _split_with_vetoes(a[inside], b[inside], weights[inside], cannot_link)
        elif len(members) > 1:
            result.append(sorted(members))
    return sorted(result, key=lambda g: g[0])


def _split_with_vetoes(a, b, weights, cannot_link) -> list[list[int]]:
    """Single linkage from the strongest edge down, refusing merges that join a vetoed pair."""
    parent: dict[int, int] = {}
    members: dict[int, set[int]] = {}

    def root(x: int) -> int:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for index in np.argsort(-weights, kind="stable"):
        ra, rb = root(int(a[index])), root(int(b[index]))
        if ra == rb:
            continue
        group_a, group_b = members.get(ra, {ra}), members.get(rb, {rb})
        if any((min(x, y), max(x, y)) in cannot_link for x in group_a for y in group_b):
            continue
        parent[rb] = ra
        members[ra] = group_a | group_b
        members.pop(rb, None)
    return [sorted(g) for r, g in members.items() if root(r) == r and len(g) > 1]


def _best_scores(a: np.ndarray, b: np.ndarray, scores: np.ndarray) -> dict[int, float]:
    """Each image's best similarity over the edges it is part of."""
    best: dict[int, float] = {}
    for x, y, s in zip(a.tolist(), b.tolist(), scores.tolist(), strict=False):
        best[x] = max(best.get(x, -1.0), s)
        best[y] = max(best.get(y, -1.0), s)
    return best


def _tier_groups(tier, components, best, rows, keepers, pairs, *, skip_identical):
    groups = []
    for members in components:
        members = [m for m in members if m in rows]
        if len(members) < 2:
            continue
        if skip_identical and len({rows[m][1] for m in members}) == 1:
            continue  # already reported as identical bytes
        groups.append(_group(tier, members, best, rows, keepers, pairs))
    return groups


def _group(tier, members, best, rows, keepers, pairs) -> DuplicateGroup | None:
    """The group with its keeper, or None when its files are all one shot (a RAW+JPEG pair is
    one photo, not two duplicates)."""
    decided = [m for m in members if m in keepers]
    keeper = decided[0] if decided else max(members, key=lambda m: rows[m][2])
    partners = tuple(m for m in members if m in pairs.get(keeper, ()))
    if len(members) - len(partners) < 2:
        return None
    return DuplicateGroup(
        tier, tuple(members), tuple(rows[m][0] for m in members),
        tuple(round(float(best.get(m, 1.0)), 6) for m in members), keeper, bool(decided), partners,
    )

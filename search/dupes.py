"""Duplicate groups from a chunked k-NN self-join over the index plus signature matches (same
bytes, same pixels, rotated or mirrored copies), in connected components, so memory stays
bounded by k per image. Each member says how it relates to the group's keeper (search.tiers).
Videos group among themselves by their frames (search.video_dupes), never with a photo."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ..indexer.store.ann import search_parameters
from ..indexer.store.decisions import read_decisions
from ..indexer.store.store import disk_path
from .index import ImageIndex
from .quality_rank import QUALITY_COLUMNS, best_by_quality, suspected_upscale
from .same_file import hard_link_sets, real_folder, split_aliases, within
from .signature_edges import LAYOUT_BITS, signature_edges
from .thresholds import NEAR_DEFAULT, SIMILAR_DEFAULT, thresholds
from .tiers import TIERS, Member, classify_members, group_reason, group_tier
from .video_dupes import classify_videos, suggested_video_keeper, video_edges, video_ids

__all__ = ["DuplicateGroup", "Member", "find_duplicates", "nearest_neighbour_scores", "TIERS", "NEAR_DEFAULT",
           "SIMILAR_DEFAULT", "thresholds"]

NEIGHBOURS = 16
CHUNK = 4096
DUPES_NPROBE_MAX = 16  # duplicates sit in the same or the next list: no need to probe deeper
SUGGESTION = ("suggested keeper: picked or best rated, then the best measured quality (not clipped, not re-saved "
              "low, the most real detail), then metadata, then the oldest file")
VIDEO_SUGGESTION = ("suggested keeper: picked or best rated, then the longest, then the most pixels, then the highest "
                    "bitrate, then the oldest file")
HARD_LINKS = "one file under {n} names (hard links): moving one frees nothing; never moved"
_SIGNATURE_WEIGHT = 2.0  # same bytes/pixels/transform edges outrank any cosine when a veto splits a group


@dataclass(frozen=True)
class DuplicateGroup:
    tier: str
    ids: tuple[int, ...]
    paths: tuple[str, ...]
    scores: tuple[float, ...]  # each member's best similarity to another member
    keeper: int  # the user's choice, else the suggestion
    keeper_decided: bool
    kept_with_keeper: tuple[int, ...] = ()  # the keeper's own RAW/JPEG partner: never a duplicate of it
    members: tuple[Member, ...] = ()
    reason: str = ""
    unsigned: int = field(default=0, compare=False)  # images without signatures when this was found
    linked: tuple[int, ...] = ()  # files also reached through another path (a link): never moved
    kind: str = "image"  # or "video": a group holds one kind only

    def to_record(self) -> dict:
        record = asdict(self)
        record.pop("unsigned")
        for member in record["members"]:
            if member["keeper"]:
                member["tier"] = None  # a relation to the keeper; the keeper has none to itself
        return record


def find_duplicates(index: ImageIndex, *, near: float | None = None, similar: float | None = None,
                    tiers: tuple[str, ...] = TIERS, against: str | os.PathLike | None = None,
                    ) -> list[DuplicateGroup]:
    """Groups whose members have a tier in `tiers` (each member's relation to the keeper),
    honouring the user's recorded decisions: groups of photos, then groups of videos. `against`
    keeps only groups with members both inside and outside that folder."""
    near, similar = thresholds(index.store, near, similar)
    decisions = read_decisions(index.store)
    videos = video_ids(index.store)
    signatures = signature_edges(index.store)
    loose = "similar" in tiers or "burst" in tiers
    groups = _photo_groups(index, signatures, videos, near, similar, loose, decisions)
    groups += _video_groups(index, near, similar, loose, decisions, signatures.unsigned)
    wanted = set(tiers)
    groups = [g for g in (_restrict(g, wanted) for g in groups) if g is not None]
    if against is not None:
        folder = real_folder(against, "against")
        groups = [g for g in groups if _crosses(g, folder)]
    return groups


def _photo_groups(index: ImageIndex, signatures, videos: np.ndarray, near: float, similar: float, loose: bool,
                  decisions) -> list[DuplicateGroup]:
    """Groups of photos: k-NN edges among photos plus signature edges (photos have them, videos not)."""
    a, b, scores = _edges(index, similar, decisions.not_duplicates, videos)
    best = _best_scores(a, b, scores)
    sa, sb = (np.concatenate(parts) for parts in zip(
        signatures.identical, signatures.same_pixels, signatures.transformed[:2], strict=True))
    sa, sb = np.minimum(sa, sb), np.maximum(sa, sb)
    if decisions.not_duplicates and len(sa):
        allowed = np.array([(int(x), int(y)) not in decisions.not_duplicates for x, y in zip(sa, sb, strict=True)])
        sa, sb = sa[allowed], sb[allowed]
    for x, y in zip(sa.tolist(), sb.tolist(), strict=True):
        best.setdefault(x, 1.0)
        best.setdefault(y, 1.0)
    all_a, all_b = np.concatenate([a, sa]), np.concatenate([b, sb])
    weights = np.concatenate([scores, np.full(len(sa), _SIGNATURE_WEIGHT, np.float32)])
    same_layout = signatures.layout_distance(a, b) <= LAYOUT_BITS  # a light crop or edit the model underrates
    strong = np.concatenate([(scores >= near) | same_layout, np.ones(len(sa), bool)])
    components = _tiered_components(all_a, all_b, weights, strong, loose, decisions.not_duplicates)
    return _build_groups(index, components, best, near, decisions.keepers, signatures.unsigned)


def _video_groups(index: ImageIndex, near: float, similar: float, loose: bool, decisions,
                  unsigned: int) -> list[DuplicateGroup]:
    """Groups of videos by their frames (search.video_dupes): rows like any other."""
    edges = video_edges(index.store, index.frames(), near=near, similar=similar, loose=loose)
    allowed = np.array([(int(x), int(y)) not in decisions.not_duplicates
                        for x, y in zip(edges.a, edges.b, strict=True)], bool).reshape(-1)
    a, b, weights = edges.a[allowed], edges.b[allowed], edges.weights[allowed]
    best = _best_scores(a, b, np.minimum(weights, 1.0))
    groups = []
    for members, level in _tiered_components(a, b, weights, edges.near[allowed], loose, decisions.not_duplicates):
        paths = {m: disk_path(edges.facts[m]) for m in members}
        groups += [_hard_link_group(same, edges.facts, unsigned, "video") for same in hard_link_sets(members, paths)]
        members, linked = split_aliases(members, paths)
        if len(members) < 2:
            continue
        decided = [m for m in members if m in decisions.keepers]
        keeper = decided[0] if decided else suggested_video_keeper(members, edges.facts)
        classified = classify_videos(members, keeper, edges, near=near, similar=similar, level=level)
        groups.append(DuplicateGroup(
            group_tier(classified), tuple(members), tuple(edges.facts[m]["path"] for m in members),
            tuple(round(float(best.get(m, 1.0)), 6) for m in members), keeper, bool(decided), (), tuple(classified),
            group_reason(classified, "kept by your decision" if decided else VIDEO_SUGGESTION), unsigned,
            tuple(sorted(linked)), "video"))
    return groups


def _tiered_components(a: np.ndarray, b: np.ndarray, weights: np.ndarray, strong: np.ndarray, loose: bool,
                       cannot_link: set[tuple[int, int]]) -> list[tuple[list[int], str]]:
    """(members, "near") for the components of the strong edges; with `loose`, (members,
    "similar") for the components of all edges that are not already a near component."""
    near_components = _components(a, b, strong, weights, cannot_link)
    components = [(c, "near") for c in near_components]
    if loose:
        known = {tuple(c) for c in near_components}
        everything = _components(a, b, np.ones(len(a), bool), weights, cannot_link)
        components += [(c, "similar") for c in everything if tuple(c) not in known]
    return components


def nearest_neighbour_scores(index: ImageIndex) -> np.ndarray:
    """Each image's best similarity to another image: the distribution thresholds cut."""
    best, videos = [], video_ids(index.store)
    for ids, vectors in _photo_chunks(index, videos):
        if not len(ids):
            continue
        scores, found = _photo_neighbours(index, vectors, 2, videos)
        own = found == ids[:, None]
        best.append(np.where(own[:, 0], scores[:, 1], scores[:, 0]))
    return np.concatenate(best) if best else np.zeros(0, np.float32)


# ---- internals ----

def _search(index: ImageIndex, vectors: np.ndarray, k: int):
    params = search_parameters(index.vectors.index, index.vectors.choice, max_nprobe=DUPES_NPROBE_MAX)
    return index.vectors.index.search(vectors, min(k, len(index)), params=params)


def _photo_chunks(index: ImageIndex, videos: np.ndarray):
    """(ids, embeddings) of the live photos, CHUNK rows at a time (a chunk may come out empty)."""
    for ids, vectors in index.store.embedding_chunks(CHUNK):
        photos = ~np.isin(ids, videos)
        yield ids[photos], vectors[photos]


def _photo_neighbours(index: ImageIndex, vectors: np.ndarray, k: int, videos: np.ndarray):
    """The k nearest photos (scores, ids; -1 past the end): videos in the index are searched
    past, as many as k of them, so a photo's neighbours stay those of a store without videos."""
    if not len(videos):
        return _search(index, vectors, k)
    scores, found = _search(index, vectors, k + min(k, len(videos)))
    photo = (found >= 0) & ~np.isin(found, videos)
    order = np.argsort(~photo, axis=1, kind="stable")[:, :k]  # photos first, in score order
    photo = np.take_along_axis(photo, order, 1)
    scores = np.where(photo, np.take_along_axis(scores, order, 1), np.finfo(np.float32).min)  # FAISS's "none"
    return scores, np.where(photo, np.take_along_axis(found, order, 1), -1)


def _edges(index: ImageIndex, threshold: float, not_duplicates: set[tuple[int, int]],
           videos: np.ndarray | None = None):
    """Pairs (a < b) of neighbouring photos scoring >= threshold, minus the user's 'not
    duplicates'. `videos`: the live videos' ids, when the caller has them."""
    videos = video_ids(index.store) if videos is None else videos
    parts_a, parts_b, parts_s = [], [], []
    for ids, vectors in _photo_chunks(index, videos):
        if not len(ids):
            continue
        scores, found = _photo_neighbours(index, vectors, NEIGHBOURS, videos)
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


def _build_groups(index: ImageIndex, components, best, near: float, keepers: set[int], unsigned: int):
    ids = sorted({i for members, _ in components for i in members})
    facts = index.store.records_by_id(
        "path, path_bytes, content_hash, pixel_hash, orientation_hash, camera, captured_at, format, "
        f"size, mtime_ns, rating, pick, {QUALITY_COLUMNS}, "
        "(captured_at IS NOT NULL)::INT + (camera IS NOT NULL)::INT AS richness", ids)
    found, vectors = index.store.embeddings(np.asarray(ids, np.int64))
    row_of = {int(i): r for r, i in enumerate(found)}
    pairs = index.pairs()
    groups = []
    for members, level in components:
        members = [m for m in members if m in facts and m in row_of]
        paths = {m: disk_path(facts[m]) for m in members}
        groups += [_hard_link_group(same, facts, unsigned) for same in hard_link_sets(members, paths)]
        # a link and its target are one file: one member stands for it
        members, linked = split_aliases(members, paths)
        if len(members) < 2:
            continue
        decided = [m for m in members if m in keepers]
        keeper = decided[0] if decided else suggested_keeper(members, facts)
        partners = tuple(m for m in members if m in pairs.get(keeper, ()))
        if len(members) - len(partners) < 2:
            continue  # a RAW+JPEG pair is one photo, not two duplicates
        cosines = dict(zip(members, (vectors[[row_of[m] for m in members]] @ vectors[row_of[keeper]]).tolist(),
                           strict=True))
        classified = [replace(m, suspected_upscale=suspected_upscale(facts[m.id], [facts[o] for o in members
                                                                                  if o != m.id]))
                      for m in classify_members(members, keeper, facts, cosines, near=near, level=level,
                                                partners=partners)]
        why = "kept by your decision" if decided else SUGGESTION
        groups.append(DuplicateGroup(
            group_tier(classified, partners), tuple(members), tuple(facts[m]["path"] for m in members),
            tuple(round(float(best.get(m, 1.0)), 6) for m in members), keeper, bool(decided), partners,
            tuple(classified), group_reason(classified, why), unsigned, tuple(sorted(linked)),
        ))
    return groups


def suggested_keeper(members: list[int], facts: dict) -> int:
    """The suggestion: the photographer's pick or best rating first, then the best measured
    quality within its margin (search.quality_rank), then suggestion_key."""
    standing = {m: suggestion_key(facts[m], m)[:2] for m in members}
    top = max(standing.values())
    candidates = best_by_quality({m: facts[m] for m in members if standing[m] == top})
    return max(candidates, key=lambda m: suggestion_key(facts[m], m))


def suggestion_key(fact: dict, row_id: int) -> tuple:
    """The keeper we suggest: the photographer's pick or best rating (a reject last), then the best
    measured quality (search.quality_rank), the richest metadata, the oldest file (copies come
    later), the shortest path, the largest file."""
    rating = -1 if fact["pick"] == "rejected" else (fact["rating"] or 0)
    return (fact["pick"] == "picked", rating, fact["richness"], -fact["mtime_ns"], -len(fact["path"]), fact["size"],
            -row_id)


def _hard_link_group(same: list[int], facts: dict, unsigned: int, kind: str = "image") -> DuplicateGroup:
    """Hard links reported as what they are: one file, nothing to free, never planned for a move."""
    keeper = same[0]
    members = tuple(Member(i, facts[i]["path"], 1.0, "hardlink", None,
                           "the keeper" if i == keeper else f"the same file as {facts[keeper]['path']} (a hard link)",
                           i == keeper) for i in same)
    return DuplicateGroup("hardlink", tuple(same), tuple(facts[i]["path"] for i in same), (1.0,) * len(same),
                          keeper, False, (), members, HARD_LINKS.format(n=len(same)), unsigned, tuple(same), kind)


def _restrict(group: DuplicateGroup, wanted: set[str]) -> DuplicateGroup | None:
    """The group with only the members of the wanted tiers (the keeper and its partner stay)."""
    if set(TIERS) <= wanted:
        return group
    keep = [m for m in group.members
            if m.keeper or m.id in group.kept_with_keeper or m.tier in wanted]
    if len(keep) - 1 - len(group.kept_with_keeper) < 1:
        return None
    index = {m.id: n for n, m in enumerate(group.members)}
    chosen = [index[m.id] for m in keep]
    return DuplicateGroup(
        group_tier(keep, group.kept_with_keeper), tuple(group.ids[n] for n in chosen),
        tuple(group.paths[n] for n in chosen), tuple(group.scores[n] for n in chosen), group.keeper,
        group.keeper_decided, group.kept_with_keeper, tuple(keep), group.reason, group.unsigned,
        tuple(i for i in group.linked if i in index), group.kind)


def _crosses(group: DuplicateGroup, folder: str) -> bool:
    inside = [within(p, folder) for p in group.paths]
    return any(inside) and not all(inside)

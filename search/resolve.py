"""Rule-based resolution of duplicate groups: an ordered list of keeper preferences picks each
group's keeper (ties fall to the next rule), and the plan lists what would move to the
quarantine. Planning never touches a file; applying is indexer.store.quarantine's job."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..indexer.errors import ConfigError
from ..indexer.imaging.quality import effective_pixels
from ..indexer.store.companions import disk_records_keys, moving_companions
from ..indexer.store.decisions import read_decisions
from ..indexer.store.store import MTIME, Store, disk_path
from .dupes import DuplicateGroup, find_duplicates
from .quality_rank import best_by_quality, quality_reason
from .video_dupes import longest

if TYPE_CHECKING:
    from .index import ImageIndex
from .pairs import shot_key
from .same_file import real_folder, within

__all__ = ["GroupPlan", "ResolutionPlan", "plan_cleanup", "plan_group", "plan_resolution", "parse_rules", "RULES",
           "RESOLVE_TIERS", "summarize", "plan_marks"]

# Only true duplicates are resolved unless asked: similar shots and bursts are different photos.
RESOLVE_TIERS = ("identical", "same-pixels", "near")

# name -> (what it prefers, key: higher is better)
RULES: dict[str, tuple[str, Callable[[dict], object]]] = {
    "largest-resolution": ("the most pixels", lambda f: f["pixels"]),
    "smallest-resolution": ("the fewest pixels", lambda f: -f["pixels"]),
    "largest-file": ("the largest file", lambda f: f["size"]),
    "smallest-file": ("the smallest file", lambda f: -f["size"]),
    "oldest-capture": ("the earliest capture time", lambda f: _ts(f["captured_at"], negate=True)),
    "newest-capture": ("the latest capture time", lambda f: _ts(f["captured_at"])),
    "oldest-file": ("the oldest file", lambda f: _ts(f["modified"], negate=True)),
    "newest-file": ("the newest file", lambda f: _ts(f["modified"])),
    "has-exif": ("capture time and camera recorded", lambda f: f["richness"]),
    "shortest-path": ("the shortest path", lambda f: -len(f["path"])),
    "keep-raw": ("the camera RAW file", lambda f: f["format"] == "RAW"),
    # the photographer's records (XMP: indexer.records)
    "highest-rating": ("the highest rating", lambda f: _rating(f)),
    "picked": ("a picked file", lambda f: f["pick"] == "picked"),
    "not-rejected": ("a file not rejected", lambda f: f["pick"] != "rejected" and f["rating"] != -1),
    "most-keywords": ("the most keywords", lambda f: f["keyword_count"]),
    # measured quality (indexer.imaging.quality); a file not yet measured ranks last
    "sharpest": ("the sharpest picture", lambda f: f["sharpness"] if f["sharpness"] is not None else -1.0),
    "highest-jpeg-quality": ("the least compressed file (a lossless format counts as 100)",
                             lambda f: f["jpeg_quality"] if f["jpeg_quality"] is not None else 100),
    # measured quality with a margin (search.quality_rank.best_by_quality): ties fall to the next rule
    "most-detail": ("the most detail (pixels weighted by the detail they hold)", None),
    "best-quality": ("the best measured quality: not clipped, not re-saved low, the most real detail", None),
    # videos (search.video_dupes); photos have neither, so among photos these tie
    "longest": ("the longest video (lengths within 1% are equal: a trim is not kept over its source)", None),
    "highest-bitrate": ("the highest bitrate (a video's bits per second)", lambda f: f["bitrate"]),
}
PREFIX_RULES = ("prefer:", "avoid:")  # prefer:PATH keeps a copy under PATH; avoid:PATH one outside it


@dataclass(frozen=True)
class GroupPlan:
    tier: str
    keeper: dict  # {"id", "path", "rating", "pick"}
    # [{"id", "path", "rating", "pick", "companions"}]: what --apply moves into the quarantine, each
    # image with the files that belong to it (indexer.store.companions)
    move: list[dict]
    rule: str  # the rule that decided the keeper
    reason: str
    bytes: int  # of the images and their companions
    guard: str | None = None  # how the rating guard changed the keeper the rules chose, if it did

    def to_record(self) -> dict:
        shown = [{k: v for k, v in m.items() if k != "disk"} for m in (self.keeper, *self.move)]
        return {"tier": self.tier, "keeper": shown[0], "move": shown[1:], "rule": self.rule,
                "reason": self.reason, "bytes": self.bytes, "guard": self.guard}

    @property
    def companions(self) -> int:
        return sum(len(m["companions"]) for m in self.move)


@dataclass
class ResolutionPlan:
    """The groups that have something to move, and the groups left alone with why. Iterates
    over the groups."""

    groups: list[GroupPlan]
    skipped: list[tuple[str, str]]  # (the group's keeper, why nothing of it moves)
    unsigned: int = 0  # images without signatures when the groups were found (plan_cleanup)
    close: int = 0  # groups left out: their copies differ by less than min_difference

    def __iter__(self):
        return iter(self.groups)

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, n):
        return self.groups[n]

    def keepers(self) -> dict[int, int]:
        """Each file to move -> the copy that stays: what indexer.store.quarantine checks before a move."""
        return {m["id"]: p.keeper["id"] for p in self.groups for m in p.move}


def parse_rules(text: str) -> list[str]:
    """'largest-resolution,prefer:/photos/best,keep-raw' -> the rule list, checked."""
    rules = [r.strip() for r in text.split(",") if r.strip()]
    if not rules:
        raise ConfigError("resolve needs at least one rule, e.g. 'largest-resolution,largest-file'",
                          parameter="resolve")
    for rule in rules:
        if rule.startswith(PREFIX_RULES):
            if not rule.split(":", 1)[1]:
                raise ConfigError(f"rule {rule!r} needs a folder: prefer:/path/to/folder")
        elif rule not in RULES:
            raise ConfigError(f"unknown rule {rule!r}; rules: {', '.join([*RULES, 'prefer:PATH', 'avoid:PATH'])}")
    return rules


def plan_cleanup(index: ImageIndex, rules: str | list[str], *, tiers: Iterable[str] | None = RESOLVE_TIERS,
                 near: float | None = None, similar: float | None = None, against: str | os.PathLike | None = None,
                 protect: Iterable[str] = (), override_ratings: bool = False,
                 min_difference: float | None = None) -> ResolutionPlan:
    """The cleanup of the library's duplicate groups of `tiers` by `rules` (a rule list or its
    text), honouring the keepers the user recorded and, unless `override_ratings`, the ratings
    and picks: the one plan `vitsearch dupes --resolve` and the page's cleanup show and apply.
    Planning moves nothing; indexer.store.quarantine applies."""
    if isinstance(rules, str):
        rules = parse_rules(rules)
    groups = find_duplicates(index, near=near, similar=similar, tiers=tuple(tiers or RESOLVE_TIERS), against=against)
    plan = plan_resolution(index.store, groups, rules, protect=list(protect),
                           keepers=read_decisions(index.store).keepers, override_ratings=override_ratings,
                           min_difference=min_difference)
    plan.unsigned = groups[0].unsigned if groups else 0
    return plan


def plan_group(index: ImageIndex, group: DuplicateGroup) -> ResolutionPlan:
    """The plan of one reviewed group with its keeper as the user's choice (the page's
    "Quarantine the others"): what would move, by the same rules of what never moves (a file
    rated above the keeper, or picked, stays)."""
    return plan_resolution(index.store, [group], [], keepers={group.keeper})


def plan_resolution(store: Store, groups: list[DuplicateGroup], rules: list[str], *,
                    protect: list[str] = (), keepers: set[int] = frozenset(),
                    check_files: bool = True, override_ratings: bool = False,
                    min_difference: float | None = None) -> ResolutionPlan:
    """The keeper and the files to move of every group that has something to move. Never moved:
    any group's keeper, a file the user said to keep, a protected file, a burst frame, the
    keeper's RAW/JPEG partner, a file other paths link to, a link, a file already gone, and
    (unless `override_ratings`) a file rated above its keeper or picked: the group's best-rated
    member (a picked one first) is its keeper, the rules choosing among equals. A group whose
    keeper is gone or changed on disk moves nothing. A file in two groups moves once. Each moving
    file takes the files that belong to it along. With `min_difference` (a ratio, e.g. 1.2), a
    copy moves only if it differs from its keeper by that much in bytes, pixels or effective
    pixels (measured detail): a group of copies too alike to choose between is left out. Folders
    (protect, prefer:, avoid:) are compared as real paths and must exist."""
    protect = [real_folder(p, "protect") for p in protect]
    folders = {r: real_folder(r.split(":", 1)[1], r) for r in rules if r.startswith(PREFIX_RULES)}
    ids = sorted({i for g in groups for i in g.ids})
    facts = store.records_by_id(
        f"path, path_bytes, format, size, mtime_ns, coalesce(width * height, 0) AS pixels, captured_at, "
        f"{MTIME} AS modified, (captured_at IS NOT NULL)::INT + (camera IS NOT NULL)::INT AS richness, "
        "rating, pick, keywords, coalesce(len(keywords), 0) AS keyword_count, records_key, sharpness, "
        "jpeg_quality, detail, coalesce(clipped_shadows + clipped_highlights, 0) AS clipped, "
        "coalesce(duration, 0) AS duration, coalesce(bitrate, 0) AS bitrate, kind", ids)
    for fact in facts.values():
        fact["disk"] = disk_path(fact)  # the name to look at on disk (a non-UTF-8 name's raw bytes)
    linked = {i for g in groups for i in g.linked}
    guarded = not override_ratings
    chosen = [_choose_keeper(g, facts, rules, folders, protect, keepers, linked, guarded) for g in groups]
    never_move = ({k for k, _, _ in chosen} | set(keepers) | linked
                  | {i for i in ids if _protected(facts, i, protect)})
    plan, moving = ResolutionPlan([], []), set()
    stale = _stale_records(facts) if check_files else set()
    for group, (keeper, rule, guard) in zip(groups, chosen, strict=True):
        changed = [facts[i]["path"] for i in group.ids if i in stale]
        if changed:
            plan.skipped.append((facts[keeper]["path"], f"the XMP records of {changed[0]} changed since it was "
                                 "indexed (a rating or sidecar edited): run `vitsearch index` first; nothing of "
                                 "its group moves"))
            continue
        staying = (never_move | _partners(keeper, group, facts)
                   | {m.id for m in group.members if m.tier == "burst"}
                   | (_outranking(keeper, group, facts) if guarded else set()))
        move = [i for i in group.ids if i not in staying and i not in moving and i in facts
                and (not check_files or _movable(facts[i]["disk"]))]
        if group.tier in ("burst", "hardlink") or not move:
            continue
        if min_difference is not None:
            move = [i for i in move if _differs(facts[keeper], facts[i], min_difference)]
            if not move:
                plan.close += 1
                continue
        if check_files and not _unchanged(facts[keeper]):
            plan.skipped.append((facts[keeper]["path"], "the keeper is gone or changed since it was indexed "
                                 "(run `vitsearch index` first); nothing of its group moves"))
            continue
        moving.update(move)
        plan.groups.append(GroupPlan(
            group.tier, _member(facts[keeper], keeper), [_member(facts[i], i) for i in move], rule,
            _reason(rule, group, keeper, move, facts),
            sum(int(facts[i]["size"]) for i in move), guard))
    return _with_companions(plan, facts) if check_files else plan


def summarize(plans: list[GroupPlan]) -> str:
    files = sum(len(p.move) for p in plans)
    companions = sum(p.companions for p in plans)
    along = f" with {companions:,} companion file{'s' if companions != 1 else ''}" if companions else ""
    return (f"{files:,} file{'s' if files != 1 else ''}{along} in {len(plans):,} "
            f"group{'s' if len(plans) != 1 else ''} would move, {_human(sum(p.bytes for p in plans))}")


def _stale_records(facts: dict) -> set[int]:
    """Ids whose sidecars or file changed since their records were read: the plan would decide
    on ratings and picks the photographer has since changed. A video whose records were never
    read (the indexer does not read a video's XMP yet: docs/videos.md) has none to be stale."""
    read = {i: f for i, f in facts.items() if f["kind"] != "video" or f["records_key"] is not None}
    on_disk = disk_records_keys((f["disk"], f["size"], f["mtime_ns"]) for f in read.values())
    return {i for i, f in read.items() if on_disk[f["disk"]] != f["records_key"]}


def _differs(keeper: dict, other: dict, ratio: float) -> bool:
    """Whether two copies differ by `ratio` in bytes, pixels or effective pixels."""
    pairs = ((keeper["size"], other["size"]), (keeper["pixels"], other["pixels"]),
             (effective_pixels(keeper["pixels"], keeper["detail"]), effective_pixels(other["pixels"], other["detail"])))
    return any(max(a, b) >= ratio * min(a, b) for a, b in pairs if min(a, b) > 0)


def _reason(rule: str, group: DuplicateGroup, keeper: int, move: list[int], facts: dict) -> str:
    """The group's reason; when measured quality chose the keeper, the fact that decided, against
    the largest copy that moves."""
    if rule not in ("best-quality", "most-detail"):
        return group.reason
    largest = max(move, key=lambda i: facts[i]["pixels"])
    return f"{quality_reason(facts[keeper], facts[largest])}; {group.reason}"


def _member(fact: dict, row_id: int) -> dict:
    return {"id": row_id, "path": fact["path"], "disk": fact["disk"], "rating": fact["rating"], "pick": fact["pick"],
            "keywords": list(fact["keywords"] or [])}


def plan_marks(plan: ResolutionPlan, *, reject: bool = True, merge: bool = False) -> list:
    """What `--mark xmp` (reject each file that would move, with a keyword naming its keeper) and
    `--merge-metadata` (the keeper gets the group's keywords and best rating) write into sidecars
    (indexer.sidecar_marks.SidecarMark); nothing moves."""
    from ..indexer.sidecar_marks import DUPLICATE_KEYWORD, SidecarMark

    marks = []
    for group in plan.groups:
        keeper = group.keeper
        if reject:  # a new sidecar must say the file's own keywords too: a sidecar wins over embedded XMP
            keyword = DUPLICATE_KEYWORD.format(keeper=os.path.basename(keeper["path"]))
            marks += [SidecarMark(m["disk"], reject=True, keywords=(*m["keywords"], keyword)) for m in group.move]
        if merge:
            members = [keeper, *group.move]
            keywords = [k for m in members for k in m["keywords"] if not k.startswith("vitsearch|")]
            ratings = [m["rating"] for m in members if m["rating"] is not None and m["rating"] >= 0]
            best = max(ratings, default=None)
            rating = best if best is not None and best > (keeper["rating"] or 0) else None
            extra = [k for k in keywords if k not in keeper["keywords"]]
            if rating is not None or extra:
                union = tuple(dict.fromkeys([*keeper["keywords"], *extra]))
                marks.append(SidecarMark(keeper["disk"], rating=rating, keywords=union))
    return marks


def _with_companions(plan: ResolutionPlan, facts: dict) -> ResolutionPlan:
    """Each moving file's companions (what the apply moves with it), counted in the bytes."""
    along = moving_companions([facts[m["id"]]["disk"] for p in plan.groups for m in p.move])
    groups = []
    for p in plan.groups:
        move, size = [], p.bytes
        for m in p.move:
            companions = along.get(facts[m["id"]]["disk"], [])
            size += sum(_size(c) for c in companions)
            move.append({**m, "companions": companions})
        groups.append(GroupPlan(p.tier, p.keeper, move, p.rule, p.reason, size, p.guard))
    plan.groups = groups
    return plan


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _rating(fact: dict) -> int:
    """A rejected file ranks below an unrated one (XMP's 0: no rating)."""
    if fact["pick"] == "rejected" or fact["rating"] == -1:
        return -1
    return fact["rating"] or 0


def _standing(fact: dict) -> tuple[bool, int]:
    """How the photographer ranked a file: picked first, then by rating."""
    return fact["pick"] == "picked", _rating(fact)


def _outranking(keeper: int, group: DuplicateGroup, facts: dict) -> set[int]:
    """Members picked or rated above the keeper (the keeper the user decided, or a protected one):
    the rating guard never moves them."""
    mine = _rating(facts[keeper])
    return {i for i in group.ids if i in facts and (facts[i]["pick"] == "picked" or _rating(facts[i]) > mine)}


def _choose_keeper(group: DuplicateGroup, facts: dict, rules: list[str], folders: dict[str, str],
                   protect: list[str], keepers: set[int], linked: set[int],
                   guarded: bool) -> tuple[int, str, str | None]:
    candidates = [i for i in group.ids if i in facts]
    decided = [i for i in candidates if i in keepers]
    if decided:
        return decided[0], "keep (your decision)", None
    held = [i for i in candidates if _protected(facts, i, protect)]
    why = "protected"
    if not held:
        held, why = [i for i in candidates if i in linked], "reached through a link too"
    if held:
        candidates = held
    if len(candidates) == 1:
        return candidates[0], why if held else "only candidate", None
    if guarded:
        best = max(_standing(facts[i]) for i in candidates)
        top = [i for i in candidates if _standing(facts[i]) == best]
        if len(top) < len(candidates):
            unguarded, rule_alone = _by_rules(group, candidates, facts, rules, folders)
            keeper, rule = _by_rules(group, top, facts, rules, folders) if len(top) > 1 else (top[0], "rating guard")
            note = None
            if keeper != unguarded:
                note = (f"rating guard: kept {facts[keeper]['path']} ({_described(facts[keeper])}) over "
                        f"{facts[unguarded]['path']} ({_described(facts[unguarded])}), which the rules chose "
                        f"({rule_alone}); --override-ratings lets the rules decide")
            return keeper, rule, note
    return (*_by_rules(group, candidates, facts, rules, folders), None)


def _described(fact: dict) -> str:
    if fact["pick"] == "picked":
        return "picked" + (f", rated {fact['rating']}" if fact["rating"] else "")
    if _rating(fact) == -1:
        return "rejected"
    return f"rated {fact['rating']}" if fact["rating"] else "unrated"


def _by_rules(group: DuplicateGroup, candidates: list[int], facts: dict, rules: list[str],
              folders: dict[str, str]) -> tuple[int, str]:
    for rule in rules:
        if rule in ("best-quality", "most-detail"):
            candidates = best_by_quality({i: facts[i] for i in candidates}, detail_only=rule == "most-detail")
        elif rule == "longest":
            candidates = longest({i: facts[i] for i in candidates})
        else:
            scores = {i: _score(rule, facts[i], folders) for i in candidates}
            best = max(scores.values())
            candidates = [i for i in candidates if scores[i] == best]
        if len(candidates) == 1:
            return candidates[0], rule
    if group.keeper in candidates:
        return group.keeper, "tie: the suggested keeper"
    return min(candidates), "tie: lowest id"


def _score(rule: str, fact: dict, folders: dict[str, str]):
    if rule.startswith("prefer:"):
        return within(fact["disk"], folders[rule])
    if rule.startswith("avoid:"):
        return not within(fact["disk"], folders[rule])
    return RULES[rule][1](fact)


def _protected(facts: dict, row_id: int, protect: list[str]) -> bool:
    return row_id in facts and any(within(facts[row_id]["disk"], p) for p in protect)


def _partners(keeper: int, group: DuplicateGroup, facts: dict) -> set[int]:
    """The chosen keeper's RAW/JPEG partner in the group (the same shot, kept with it), whichever
    copy the rules chose."""
    key, raw = shot_key(facts[keeper]["path"]), facts[keeper]["format"] == "RAW"
    return {i for i in group.ids if i != keeper and i in facts and shot_key(facts[i]["path"]) == key
            and (facts[i]["format"] == "RAW") != raw}


def _movable(path: str) -> bool:
    """There, and a file of its own: moving a link would free nothing."""
    return os.path.lexists(path) and not os.path.islink(path)


def _unchanged(fact: dict) -> bool:
    try:
        stat = os.stat(fact["disk"])
    except OSError:
        return False
    return stat.st_size == fact["size"] and stat.st_mtime_ns == fact["mtime_ns"]


def _ts(value, *, negate: bool = False) -> float:
    """A timestamp as a number; a missing one sorts last for either direction."""
    if value is None:
        return float("-inf")
    seconds = value.timestamp()
    return -seconds if negate else seconds


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1000
    return f"{size} B"

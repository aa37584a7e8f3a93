"""Duplicates and their cleanup: GET /duplicates (the groups of `dupes --json`, paged), POST
/duplicates/plan (a dry run), and, where the server allows writes as the page's buttons do,
POST /decisions, /duplicates/apply (a plan id) and /duplicates/undo. The verbs are the page's
and the command line's own: search.resolve plans, indexer.store.quarantine moves, indexer.undo."""

from __future__ import annotations

import json
import threading
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from ...indexer.sidecar_marks import mark_sidecars
from ...indexer.store.decisions import read_decisions, record_keeper, record_not_duplicates
from ...indexer.store.quarantine import quarantine_plan, settle_quarantine
from ...indexer.undo import undo_cleanup
from ...search import ImageIndex
from ...search.dupes import TIERS, find_duplicates
from ...search.resolve import RESOLVE_TIERS, plan_cleanup, plan_marks, summarize
from .access import ApiAccess
from .errors import ApiError
from .plans import PlanBook

__all__ = ["cleanup_router", "PlanRequest", "ApplyRequest", "DecisionRequest", "DEFAULT_RULES"]

# The page's default rules (ui.duplicates_tab), repeated here so the API needs no Gradio import.
DEFAULT_RULES = "largest-resolution,largest-file,oldest-capture,has-exif,shortest-path"
WAIT_SECONDS = 5.0  # a write while an index run holds the store waits this long, then answers 409
MAX_PAGE = 500
Tier = Literal[TIERS]  # type: ignore[valid-type]


class PlanRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: str = Field(DEFAULT_RULES, max_length=4000, description="as `dupes --resolve`, comma-separated")
    tiers: list[Tier] = Field(default_factory=lambda: list(RESOLVE_TIERS))
    near: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)
    similar: float | None = Field(None, gt=0, le=1, allow_inf_nan=False)
    against: str | None = Field(None, max_length=4096, description="only groups crossing this folder")
    protect: list[str] = Field(default_factory=list, max_length=100, description="folders never moved from")
    override_ratings: bool = False
    min_difference: float | None = Field(None, ge=1, allow_inf_nan=False)


class ApplyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan_id: str = Field(max_length=64)
    merge_metadata: bool = False


class UndoRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["keep", "not_duplicates"]
    ids: list[int] = Field(min_length=1, max_length=1000, description="keep: one id; not_duplicates: two or more")


def cleanup_router(index: ImageIndex, access: ApiAccess) -> APIRouter:
    router = APIRouter()
    plans = PlanBook()
    groups = _GroupCache()

    @router.get("/duplicates", summary="Duplicate groups, as `vitsearch dupes --json`, paged")
    def duplicates(tier: Annotated[list[Tier] | None, Query()] = None,
                   near: Annotated[float | None, Query(gt=0, le=1, allow_inf_nan=False)] = None,
                   similar: Annotated[float | None, Query(gt=0, le=1, allow_inf_nan=False)] = None,
                   against: Annotated[str | None, Query(max_length=4096)] = None,
                   offset: Annotated[int, Query(ge=0)] = 0,
                   limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50) -> Response:
        """`tier` (repeatable) defaults to the cleanup's tiers: identical, same-pixels, near."""
        found = groups.get(index, tuple(tier or RESOLVE_TIERS), near, similar, against)
        page = [g.to_record() for g in found[offset:offset + limit]]
        return _json({"total": len(found), "offset": offset, "limit": limit, "groups": page})

    @router.post("/duplicates/plan", summary="A dry run of a cleanup: what would move; its plan_id applies it")
    def plan(request: PlanRequest) -> Response:
        index.refresh()
        made = plan_cleanup(index, request.rules, tiers=request.tiers, near=request.near, similar=request.similar,
                            against=request.against, protect=request.protect,
                            override_ratings=request.override_ratings, min_difference=request.min_difference)
        generation = int(index.manifest.get("generation", 0))
        return _json({"plan_id": plans.add(made, generation), "generation": generation, "summary": summarize(made),
                      "groups": [p.to_record() for p in made],
                      "skipped": [{"keeper": keeper, "why": why} for keeper, why in made.skipped]})

    @router.post("/duplicates/apply", summary="Move a plan's files into the quarantine (undo puts them back)")
    def apply(request: ApplyRequest) -> Response:
        _writable(access)
        store_dir = index.store.dir
        settled = settle_quarantine(store_dir, wait=WAIT_SECONDS)
        index.refresh()
        kept = plans.take(request.plan_id, int(index.manifest.get("generation", 0)))
        keepers = kept.plan.keepers()
        report = quarantine_plan(store_dir, keepers, wait=WAIT_SECONDS) if keepers else None
        marked = None
        if report is not None and report.manifest is not None and request.merge_metadata:
            marks = plan_marks(kept.plan, reject=False, merge=True)
            marked = mark_sidecars(store_dir, marks, with_apply=report.manifest, wait=WAIT_SECONDS) if marks else None
        index.refresh()
        return _json({**_moves(report), "settled": settled,
                      "marked": [w.sidecar for w in marked.written] if marked else []})

    @router.post("/duplicates/undo", summary="Undo the latest cleanup (files moved, sidecars marked, or both)")
    def undo(request: UndoRequest | None = None) -> Response:
        _writable(access)
        report = undo_cleanup(index.store.dir, wait=WAIT_SECONDS)
        index.refresh()
        moves, marks = report.moves, report.marks
        return _json({"manifest": str((moves or marks).manifest),
                      "restored": [m.source for m in moves.moved] if moves else [],
                      "sidecars_restored": [w.sidecar for w in marks.written] if marks else [],
                      "skipped": [{"path": p, "why": w} for part in (moves, marks) if part for p, w in part.skipped]})

    @router.post("/decisions", summary="Record a decision: keep this image, or these are not duplicates")
    def decide(request: DecisionRequest) -> Response:
        _writable(access)
        known = index.describe(request.ids)
        missing = [i for i in request.ids if i not in known]
        if missing:
            raise ApiError("unknown_id", f"no indexed image has id {missing[0]}")
        if request.kind == "keep":
            if len(request.ids) != 1:
                raise ApiError("invalid_request", "keep takes exactly one id")
            written = record_keeper(index.store.dir, request.ids[0], wait=WAIT_SECONDS)
        else:
            written = record_not_duplicates(index.store.dir, request.ids, wait=WAIT_SECONDS)
        return _json({"kind": request.kind, "ids": request.ids, "new": written})

    return router


class _GroupCache:
    """The last groups found, by what they depend on: paging through them costs no new search.
    Decisions and calibrated thresholds change the groups without a new store generation, so
    the key holds them too (the manifest, generation included, and the decisions, both small)."""

    def __init__(self):
        self._key, self._groups = None, []
        self._lock = threading.Lock()

    def get(self, index: ImageIndex, tiers, near, similar, against) -> list:
        with self._lock:
            index.refresh()
            decisions = read_decisions(index.store)
            key = (json.dumps(index.store.manifest(), sort_keys=True, default=str),
                   frozenset(decisions.not_duplicates), frozenset(decisions.keepers), tiers, near, similar, against)
            if key != self._key:
                self._groups = find_duplicates(index, near=near, similar=similar, tiers=tiers, against=against)
                self._key = key
            return self._groups


def _writable(access: ApiAccess) -> None:
    if not access.writes:
        raise ApiError("writes_disabled", "this server is read-only (`vitsearch serve --read-only`): "
                                          "cleanups and decisions are refused, as on the page")


def _moves(report) -> dict:
    if report is None or report.manifest is None:
        return {"manifest": None, "moved": [], "images": 0, "companions": 0, "bytes": 0,
                "skipped": [{"path": p, "why": w} for p, w in (report.skipped if report else [])]}
    return {"manifest": str(report.manifest), "moved": [{"id": m.id, "path": m.source, "companion": m.companion}
                                                        for m in report.moved],
            "images": report.images, "companions": report.companions, "bytes": report.bytes,
            "skipped": [{"path": p, "why": w} for p, w in report.skipped]}


def _json(value) -> Response:
    return Response(json.dumps(value, default=str), media_type="application/json")

"""POST /search: a query as an uploaded image (multipart) or a JSON body naming indexed ids or
paths (several, with negatives), a region, a label; the hits are `vitsearch search --json`'s,
key for key, as the command line writes them."""

from __future__ import annotations

import json
import math

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ...indexer.errors import ImageLoadError
from ...indexer.imaging.images import inspect_image
from ...search import ImageIndex
from ..limits import oversized_query
from .errors import ApiError

__all__ = ["SearchRequest", "search_router", "run_search", "MAX_QUERIES", "MAX_K"]

MAX_QUERIES = 100  # ids or paths in one request: a combined query of more means nothing more
MAX_K = 1000
FORM_FIELDS = 16


class SearchRequest(BaseModel):
    """A search by indexed images (`id`, `path`, or several `ids` and `paths`, searched together,
    less like the `negatives`), or by `label` alone; an upload takes the place of the images."""

    model_config = ConfigDict(extra="forbid")

    id: int | None = None
    path: str | None = Field(None, max_length=4096)
    ids: list[int] = Field(default_factory=list, max_length=MAX_QUERIES)
    paths: list[str] = Field(default_factory=list, max_length=MAX_QUERIES)
    negatives: list[int | str] = Field(default_factory=list, max_length=MAX_QUERIES,
                                       description="ids or indexed paths to be less like")
    box: tuple[float, float, float, float] | None = Field(
        None, description="x0, y0, x1, y1: search with this region of the query image (upright pixels)")
    label: str | None = Field(None, max_length=200, description="alone: that class's images; else a filter")
    k: int = Field(10, ge=1, le=MAX_K)
    min_score: float | None = Field(None, ge=-1.0, le=1.0, allow_inf_nan=False)
    where: str | None = Field(None, max_length=4000, description="one SQL expression over the metadata (docs/cli.md)")
    collapse: bool = False


def search_router(index: ImageIndex) -> APIRouter:
    router = APIRouter()

    @router.post("/search", openapi_extra=_request_body(), responses={200: {"description": "the hits, best first"}},
                 summary="Images and videos most like a query")
    async def search(request: Request) -> Response:
        kind = request.headers.get("content-type", "")
        if kind.startswith("multipart/form-data"):
            options, upload, name = await _form(request)
        else:
            options, upload, name = await _json(request), None, None
        hits = await run_in_threadpool(run_search, index, options, upload, name)
        return Response(json.dumps({"hits": hits}, default=str), media_type="application/json")

    return router


def run_search(index: ImageIndex, options: SearchRequest, upload: bytes | None = None,
               upload_name: str | None = None) -> list[dict]:
    """The search the command line makes of the same query, its hits as `search --json` writes them."""
    index.refresh()
    if upload is not None:
        _check_upload(upload)
    positives, names = _positives(index, options, upload, upload_name)
    negatives = [_indexed(index, q) for q in options.negatives]
    common = {"k": options.k, "where": options.where, "min_score": options.min_score, "label": options.label,
              "collapse": options.collapse}
    if not positives:
        if options.label is None:
            raise ApiError("bad_request", "give an image (upload `image`), an id, a path, or a label")
        if options.box or negatives:
            raise ApiError("bad_request", "box and negatives need a query image")
        return _records([options.label], index.search_label(options.label, k=options.k, where=options.where))
    if options.box is not None:
        positives = [index.region(q, options.box) for q in positives]
    if len(positives) > 1 or negatives:
        hits = index.search(positives, negative=negatives, **common)
        names = [" + ".join(names) + "".join(f" - {_name(q)}" for q in options.negatives)]
    else:
        hits = index.search_many(positives, **common)[0]
    return _records(names, hits)


def _records(names: list[str], hits) -> list[dict]:
    return [{"query": names[0], "rank": rank, **hit.to_record()} for rank, hit in enumerate(hits, 1)]


def _positives(index, options, upload, upload_name) -> tuple[list, list[str]]:
    wanted = [q for q in (options.id, options.path) if q is not None] + list(options.ids) + list(options.paths)
    positives = [_indexed(index, q) for q in wanted]
    names = [_name(q) for q in wanted]
    if upload is not None:
        positives.insert(0, upload)
        names.insert(0, upload_name or "upload")
    return positives, names


def _check_upload(data: bytes) -> None:
    """Refuse, from its header alone, an upload that is no image or that would decode too big."""
    try:
        info = inspect_image(data).info
    except ImageLoadError as e:
        raise ApiError("unreadable_image", f"query image unusable: {e}") from None
    if too_big := oversized_query(info):
        raise ApiError("unreadable_image", f"{too_big}: send a smaller copy")


def _name(query: int | str) -> str:
    return f"id:{query}" if isinstance(query, int) else query


def _indexed(index: ImageIndex, query: int | str) -> int | str:
    """An id or a path of a live indexed file, else 404: the API never reads a file the index
    does not hold."""
    if isinstance(query, int):
        if not index.describe([query]):
            raise ApiError("unknown_id", f"no indexed image has id {query}")
        return query
    if not index.describe_paths([query]):
        raise ApiError("unknown_path", f"no indexed image has the path {query}")
    return query


async def _json(request: Request) -> SearchRequest:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested past Python's limit
        raise ApiError("invalid_request",
                       "the body is not JSON (or send multipart/form-data with an `image`)") from None
    return _validated(body)


async def _form(request: Request) -> tuple[SearchRequest, bytes | None, str | None]:
    form = await request.form(max_files=1, max_fields=FORM_FIELDS)
    fields, upload, name = {}, None, None
    for key, value in form.multi_items():
        if key == "image" and hasattr(value, "read"):
            upload, name = await value.read(), value.filename
        elif isinstance(value, str):
            fields[key] = _form_value(key, value)
    if upload is not None and not upload:
        raise ApiError("unreadable_image", "the uploaded image is empty")
    return _validated(fields), upload, name


def _form_value(key: str, value: str):
    """A form field as its JSON value: lists and boxes as comma-separated text."""
    if key == "box":
        return [part.strip() for part in value.split(",")]
    if key in ("ids", "paths", "negatives"):
        parts = [part.strip() for part in value.split(",") if part.strip()]
        return [int(p) if key != "paths" and p.isdigit() else p for p in parts]
    return value


def _validated(body) -> SearchRequest:
    if not isinstance(body, dict):
        raise ApiError("invalid_request", "the body must be a JSON object")
    try:
        options = SearchRequest.model_validate(body)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise ApiError("invalid_request", f"{where}: {first.get('msg')}") from None
    if options.box is not None and not all(math.isfinite(v) for v in options.box):
        raise ApiError("invalid_request", "box: four finite numbers")
    return options


def _request_body() -> dict:
    """Both ways of sending a query, for the schema (the route reads the body itself)."""
    schema = SearchRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    form = {"type": "object", "required": ["image"], "properties": {
        "image": {"type": "string", "format": "binary", "description": "the query image (at most 25 MB)"},
        "k": {"type": "integer", "default": 10}, "min_score": {"type": "number"}, "where": {"type": "string"},
        "collapse": {"type": "boolean"}, "label": {"type": "string"},
        "box": {"type": "string", "description": "x0,y0,x1,y1"},
        "negatives": {"type": "string", "description": "ids or indexed paths, comma-separated"}}}
    schema.pop("title", None)
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": schema}, "multipart/form-data": {"schema": form}}}}

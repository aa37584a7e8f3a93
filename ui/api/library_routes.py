"""What the store holds: GET /info, /labels, /images/{id} and its thumbnail (the page's bounded,
metadata-free thumbnails; never the original file)."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from ...search import ImageIndex
from ...search.labels import label_counts
from ..thumbnails import PREVIEW_SIDE, ThumbnailCache
from .errors import ApiError

__all__ = ["library_router"]


def library_router(index: ImageIndex, thumbs: ThumbnailCache) -> APIRouter:
    router = APIRouter()

    @router.get("/info", summary="What the store holds (as `vitsearch info --json`)")
    def info() -> Response:
        index.refresh()
        return _json(index.info())

    @router.get("/labels", summary="The classes the images carry (best label), with how many")
    def labels() -> Response:
        return _json({"labels": [{"label": name, "count": n} for name, n in label_counts(index.store)]})

    @router.get("/images/{image_id}", summary="One indexed image or video: metadata, labels, companions")
    def image(image_id: int) -> Response:
        return _json(describe(index, image_id))

    @router.get("/images/{image_id}/thumbnail", response_class=FileResponse,
                responses={200: {"content": {"image/jpeg": {}}, "description": "a JPEG of at most side x side"}},
                summary="A bounded, metadata-free JPEG of the image (a video's frame at `at` seconds)")
    async def thumbnail(image_id: int, side: Annotated[int, Query(ge=16, le=PREVIEW_SIDE)] = 256,
                        at: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None) -> FileResponse:
        row = await run_in_threadpool(_row, index, image_id)
        path = await run_in_threadpool(thumbs.get, row["path"], row["size"], row["mtime_ns"], side, at)
        return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300"})

    return router


def describe(index: ImageIndex, image_id: int) -> dict:
    """ImageIndex.describe's facts of one row with its labels and the other files of its shot."""
    row = _row(index, image_id)
    labels = index.labels_of([image_id]).get(image_id, [])
    pairs = index.pairs().get(image_id, ())
    partners = index.describe(pairs) if pairs else {}
    return {"id": image_id, **{k: v for k, v in row.items() if k != "id"}, "labels": labels,
            "companions": [partners[i]["path"] for i in pairs if i in partners]}


def _row(index: ImageIndex, image_id: int) -> dict:
    index.refresh()
    found = index.describe([image_id])
    if image_id not in found:
        raise ApiError("unknown_id", f"no indexed image has id {image_id}")
    return found[image_id]


def _json(value) -> Response:
    return Response(json.dumps(value, default=str), media_type="application/json")

"""The API application, mounted at /api/v1 in the page's server (same port, same store, same limits)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from ...search import ImageIndex
from ..limits import BodyLimit
from ..thumbnails import ThumbnailCache
from .access import ApiAccess, RequireCredentials
from .cleanup_routes import cleanup_router
from .errors import install_error_handlers
from .library_routes import library_router
from .search_routes import search_router

__all__ = ["build_api", "API_PREFIX"]

API_PREFIX = "/api/v1"
VERSION = "1.0.0"


def build_api(index: ImageIndex, access: ApiAccess, thumbs: ThumbnailCache | None = None) -> FastAPI:
    """The /api/v1 app over `index`. Its schema is at /api/v1/openapi.json; no docs page (it would
    load scripts from a CDN): docs/api-http.md has the reference with examples."""
    api = FastAPI(title="vitsearch", version=VERSION, openapi_url="/openapi.json", docs_url=None, redoc_url=None,
                  description="Image and video similarity search and duplicate cleanup over one vitsearch store.")
    install_error_handlers(api)
    # The page's body limits again, inside the API: a body streamed past its limit is refused here,
    # 413 in JSON. Raised out of the API, Starlette's outermost error middleware would answer it
    # 500 before the page's own limit could.
    api.add_middleware(BodyLimit)
    api.include_router(search_router(index), tags=["search"])
    api.include_router(library_router(index, thumbs or ThumbnailCache()), tags=["library"])
    api.include_router(cleanup_router(index, access), tags=["duplicates"])
    api.add_middleware(RequireCredentials, access=access)
    if access.cors_origins:  # added last: it answers a preflight before credentials are asked for
        api.add_middleware(CORSMiddleware, allow_origins=list(access.cors_origins), allow_credentials=False,
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"])
    return api

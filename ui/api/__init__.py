"""The JSON HTTP API, `/api/v1`, served by `vitsearch serve` beside the page: a thin layer over
ImageIndex and the cleanup verbs the page and the command line call (docs/api-http.md)."""

from .access import ApiAccess, read_token
from .ahead import api_ahead_lifespan
from .app import API_PREFIX, build_api

__all__ = ["build_api", "ApiAccess", "read_token", "API_PREFIX", "api_ahead_lifespan"]

"""Requests to /api/v1 go to the API ahead of the page's middleware.

The page's server (Gradio) wraps its whole app in its own CORS rules: they allow local origins
and, reached by a host name, any origin, with credentials, and answer every preflight
themselves. The API's rules are its own (none by default, `--cors-origin` an allow-list), so
its requests must not pass through those. The API is still mounted in the page's app (same
port, same router); this only chooses, per request, whether the page's middleware runs.
"""

from __future__ import annotations

import contextlib

from starlette.routing import get_route_path

__all__ = ["ApiAhead", "api_ahead_lifespan"]


class ApiAhead:
    """ASGI: paths under `prefix` go to `router` (which mounts the API), the rest to `page`."""

    def __init__(self, page, router, prefix: str):
        self.page, self.router, self.prefix = page, router, prefix.rstrip("/")

    def owns(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix + "/")

    async def __call__(self, scope, receive, send):
        # The path as the router matches it: a root path (a proxy's prefix) taken off, as Mount does.
        if scope["type"] in ("http", "websocket") and self.owns(get_route_path(scope)):
            await self.router(scope, receive, send)
        else:
            await self.page(scope, receive, send)


def api_ahead_lifespan(prefix: str):
    """A lifespan for the page's app that puts ApiAhead in front of its middleware before the
    server accepts its first request (Starlette has built the middleware stack by then: the
    lifespan's own message went through it)."""

    @contextlib.asynccontextmanager
    async def lifespan(app):
        app.middleware_stack = ApiAhead(app.middleware_stack or app.build_middleware_stack(), app.router, prefix)
        yield

    return lifespan

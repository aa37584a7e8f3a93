"""ApiAhead: /api/v1 requests skip the page's middleware (Gradio's CORS rules), the rest keep it."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from vitsearch.ui.api import API_PREFIX, api_ahead_lifespan


class StampPage:
    """Stands in for the page's middleware: marks every answer that passed through it."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        async def stamped(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-page-middleware", b"1"))
            await send(message)
        await self.app(scope, receive, send if scope["type"] != "http" else stamped)


def answer(request):
    return PlainTextResponse(request.url.path)


def page_app() -> Starlette:
    api = Starlette(routes=[Route("/info", answer)])
    return Starlette(routes=[Mount(API_PREFIX, app=api), Route("/config", answer), Route("/api/v1x", answer)],
                     middleware=[Middleware(StampPage)], lifespan=api_ahead_lifespan(API_PREFIX))


def test_behind_a_proxy_prefix_the_api_still_skips_the_page_middleware():
    """With a root path (a proxy serving the page under /photos), routes match without it."""
    with TestClient(page_app(), root_path="/photos") as client:
        api = client.get("/photos" + API_PREFIX + "/info")
        assert api.status_code == 200 and "x-page-middleware" not in api.headers
        assert client.get("/photos/config").headers["x-page-middleware"] == "1"


def test_api_requests_skip_the_page_middleware_and_the_rest_keep_it():
    with TestClient(page_app()) as client:
        api = client.get(API_PREFIX + "/info")
        assert api.status_code == 200 and api.text == API_PREFIX + "/info"
        assert "x-page-middleware" not in api.headers
        missing = client.get(API_PREFIX + "/nothing-here")
        assert missing.status_code == 404 and "x-page-middleware" not in missing.headers
        for path in ("/config", "/api/v1x"):  # a lookalike prefix is the page's
            page = client.get(path)
            assert page.status_code == 200 and page.text == path and page.headers["x-page-middleware"] == "1"


def test_without_the_lifespan_the_page_middleware_wraps_the_api():
    """The test above can fail: the same app without ApiAhead stamps the API's answers."""
    app = page_app()
    app.router.lifespan_context = Starlette().router.lifespan_context
    with TestClient(app) as client:
        assert client.get(API_PREFIX + "/info").headers["x-page-middleware"] == "1"

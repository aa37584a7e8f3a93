"""The API's refusals, served for real over a fake-encoder store: uploads bounded as the page
bounds them, bodies streamed past the limit, JSON nested past Python's limit, and an internal
error answered in JSON on a connection that keeps working."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import FakeEncoder
from tests.e2e.test_ui import bomb_png
from tests.ui.test_api_answers import api_server, fake_store
from vitsearch.search import ImageIndex
from vitsearch.ui.api.errors import CODES


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    root = tmp_path_factory.mktemp("api-errors")
    store, _ = fake_store(root, copies=())
    with api_server(ImageIndex.open(store, encoder=FakeEncoder()), root / "thumbs") as url, \
            httpx.Client(base_url=url, timeout=60) as client:
        yield {"http": client, "store": store}


def code_of(response: httpx.Response) -> str:
    body = response.json()
    assert response.status_code == CODES[body["code"]] and body["message"], body
    return body["code"]


def test_a_png_past_the_query_bound_is_refused_before_decoding(api):
    refused = api["http"].post("/search", files={"image": ("big.png", bomb_png(7000))})  # 49 MP, a few KB
    assert code_of(refused) == "unreadable_image" and "at most 40 MP" in refused.json()["message"]


def test_a_body_streamed_past_the_limit_is_413_in_json(api):
    def chunks():
        for _ in range(30):
            yield b"x" * (1 << 20)

    refused = api["http"].post("/search", content=chunks(), headers={"content-type": "application/json"})
    assert code_of(refused) == "too_large"
    plan = api["http"].post("/duplicates/plan", content=chunks(), headers={"content-type": "application/json"})
    assert code_of(plan) == "too_large"


def test_json_nested_past_the_recursion_limit_is_a_bad_request(api):
    deep = b"[" * 100_000 + b"]" * 100_000
    assert code_of(api["http"].post("/search", content=deep, headers={"content-type": "application/json"})) == \
        "invalid_request"


def test_an_internal_error_is_json_and_the_connection_keeps_working(tmp_path):
    """A route with a bug (added to the real API for this test): its error answered 500 in JSON,
    and the client's keep-alive connection still serves the next request."""
    store, _ = fake_store(tmp_path, copies=())

    def with_a_bug(api):
        @api.get("/bug")
        def bug():
            raise RuntimeError("a bug")

    with api_server(ImageIndex.open(store, encoder=FakeEncoder()), tmp_path / "thumbs", with_a_bug) as url, \
            httpx.Client(base_url=url, timeout=60) as http:
        broken = http.get("/bug")
        assert code_of(broken) == "internal" and "a bug" not in broken.text and "Traceback" not in broken.text
        assert http.get("/info").status_code == 200  # the same connection
        assert code_of(http.get("/bug")) == "internal"

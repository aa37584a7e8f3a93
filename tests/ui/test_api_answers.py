"""Each /api/v1 answer is the library call's, served for real (uvicorn on a free port) over a
store made with the fake encoder: the API adds no logic of its own."""

from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time

import httpx
import pytest

from tests.conftest import FakeEncoder, scene_bytes, write_scenes
from vitsearch.indexer import build_index
from vitsearch.search import ImageIndex


def plain(value):
    """A value as it reads after a trip through JSON (the API's dumps: default=str)."""
    return json.loads(json.dumps(value, default=str))


@contextlib.contextmanager
def api_server(index: ImageIndex, thumbs_folder, extend=None):
    """build_api over `index` (then `extend(api)`), mounted at /api/v1 and served by uvicorn on a
    free port: its URL."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from tests.e2e.test_ui import free_port
    from vitsearch.ui.api import API_PREFIX, ApiAccess, build_api
    from vitsearch.ui.thumbnails import ThumbnailCache

    api = build_api(index, ApiAccess(), ThumbnailCache(thumbs_folder))
    if extend is not None:
        extend(api)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Mount(API_PREFIX, app=api)]), host="127.0.0.1",
                                           port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}{API_PREFIX}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def fake_store(folder, copies=("scene-000", "scene-001")):
    """Six scenes and byte copies of `copies`, indexed with the fake encoder: (store, photos)."""
    photos, store = folder / "photos", folder / "store"
    write_scenes(photos, range(6))
    for name in copies:
        shutil.copy(photos / f"{name}.jpg", photos / f"{name}-copy.jpg")
    build_index([photos], store, encoder=FakeEncoder())
    return store, photos


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("api-answers")
    store, photos = fake_store(root)
    with api_server(ImageIndex.open(store, encoder=FakeEncoder()), root / "thumbs") as url, \
            httpx.Client(base_url=url, timeout=60) as client:
        yield {"http": client, "index": ImageIndex.open(store, encoder=FakeEncoder()), "photos": photos,
               "store": store, "root": root}


def test_info_labels_and_an_image_are_the_library_calls(served):
    http, index = served["http"], served["index"]
    from vitsearch.search.labels import label_counts

    assert http.get("/info").json() == plain(index.info())
    assert http.get("/labels").json() == {"labels": [{"label": n, "count": c} for n, c in label_counts(index.store)]}
    for image_id, row in index.describe(range(1, 20)).items():
        answer = http.get(f"/images/{image_id}").json()
        assert answer.pop("labels") == index.labels_of([image_id]).get(image_id, [])
        assert answer.pop("companions") == []  # no RAW+JPEG pairs here
        assert answer == plain({"id": image_id, **row})


def test_a_thumbnail_is_the_pages_thumbnail(served):
    from vitsearch.ui.thumbnails import ThumbnailCache

    http, index = served["http"], served["index"]
    row = index.describe([2])[2]
    made = ThumbnailCache(served["root"] / "other-thumbs").get(row["path"], row["size"], row["mtime_ns"], 96)
    answer = http.get("/images/2/thumbnail", params={"side": 96})
    assert answer.headers["content-type"] == "image/jpeg"
    assert answer.content == open(made, "rb").read()


def test_search_is_search_many_and_search(served):
    http, index = served["http"], served["index"]

    def records(name, hits):
        return plain([{"query": name, "rank": rank, **hit.to_record()} for rank, hit in enumerate(hits, 1)])

    answer = http.post("/search", json={"id": 3, "k": 4})
    assert answer.json()["hits"] == records("id:3", index.search_many([3], k=4)[0])
    query = scene_bytes(40)
    answer = http.post("/search", files={"image": ("q.jpg", query)}, data={"k": "5", "where": "size > 0"})
    assert answer.json()["hits"] == records("q.jpg", index.search_many([query], k=5, where="size > 0")[0])
    answer = http.post("/search", json={"ids": [1, 4], "negatives": [5], "collapse": True})
    assert answer.json()["hits"] == records("id:1 + id:4 - id:5", index.search([1, 4], negative=[5], collapse=True))


def test_duplicates_plan_and_decisions_are_the_cleanup_verbs(served):
    from vitsearch.search.dupes import find_duplicates
    from vitsearch.search.resolve import RESOLVE_TIERS, plan_cleanup, summarize
    from vitsearch.ui.api.cleanup_routes import DEFAULT_RULES

    http, index = served["http"], served["index"]
    groups = [g.to_record() for g in find_duplicates(index, tiers=RESOLVE_TIERS)]
    assert len(groups) == 2, groups
    answer = http.get("/duplicates").json()
    assert answer == plain({"total": 2, "offset": 0, "limit": 50, "groups": groups})
    assert http.get("/duplicates", params={"offset": 1, "limit": 1}).json()["groups"] == plain(groups[1:])
    plan = plan_cleanup(index, DEFAULT_RULES, tiers=RESOLVE_TIERS)
    answer = http.post("/duplicates/plan", json={}).json()
    assert answer["summary"] == summarize(plan) and answer["groups"] == plain([p.to_record() for p in plan])
    pair = [m["id"] for m in groups[0]["members"]]
    decided = http.post("/decisions", json={"kind": "not_duplicates", "ids": pair})
    assert decided.status_code == 200 and decided.json()["ids"] == pair
    index.refresh()
    after = [g.to_record() for g in find_duplicates(index, tiers=RESOLVE_TIERS)]
    assert len(after) == 1 and http.get("/duplicates").json()["groups"] == plain(after)

"""The JSON API (/api/v1), live: real `vitsearch serve` processes over a real store (random
weights), driven by plain httpx and compared with the real `vitsearch search --json`."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.conftest import REPO, run_cli, scene_bytes, write_scenes
from tests.e2e.test_crash import assert_invariants
from tests.e2e.test_ui import bomb_png, free_port, peak_rss_mb, with_gps_exif
from tests.videos import scene_shots, write_clip
from vitsearch.ui.api.errors import CODES

# Real serve processes over a random-weight store (~100 s): the slow step runs it; the inner loop has
# tests/ui/test_api_answers.py and test_api_errors.py.
pytestmark = pytest.mark.slow

TOKEN = "api-token-" + "7" * 32
LOGIN = ("ann", "correct-horse-battery")
ORIGIN = "https://photos.example"  # the one --cors-origin of the CORS server
PREFIX = "/api/v1"
BOX = (40, 30, 200, 170)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """Photos (with planted duplicates, GPS EXIF, a link out of the root, a broken file), one clip,
    the store indexed with the real CLI, and query files that are not indexed."""
    root = tmp_path_factory.mktemp("api")
    photos = root / "photos"
    write_scenes(photos, range(10))
    shutil.copy(photos / "scene-000.jpg", photos / "scene-000-copy.jpg")  # identical
    (photos / "scene-001-small.jpg").write_bytes(scene_bytes(1, quality=70))  # near
    (photos / "gps.jpg").write_bytes(with_gps_exif(scene_bytes(20)))
    os.symlink("/etc/passwd", photos / "passwd-link.jpg")
    (photos / "broken.jpg").write_bytes(b"not an image at all")
    write_clip(photos / "clip.mp4", scene_shots([3, 7], seconds=2.0))
    store = root / "store"
    result = run_cli("index", photos, "--store", store, "--weights", "random")
    assert result.returncode == 0, result.stderr
    queries = root / "queries"
    queries.mkdir()
    (queries / "new.jpg").write_bytes(scene_bytes(50))
    shutil.copy(photos / "scene-004.jpg", queries / "scene-004.jpg")  # the bytes of an indexed photo
    from vitsearch.indexer.store.store import LIVE, Store
    from vitsearch.search.labels import label_counts

    db = Store(store)
    rows = db.records("id, path", LIVE)
    ids = {Path(r["path"]).name: r["id"] for r in rows}
    label = label_counts(db)[0][0].split(",")[0]
    return {"root": root, "photos": photos, "store": store, "queries": queries, "ids": ids, "label": label,
            "paths": {r["path"] for r in rows}}


@contextlib.contextmanager
def serving(store, *flags, env=None):
    """`vitsearch serve` with `flags` on a free port, in a child process, up and answering:
    (url, process). Its log goes to a file (a pipe left unread would stall a busy server)."""
    port = free_port()
    log = Path(store).parent / f"serve-{port}.log"
    command = [sys.executable, "-m", "vitsearch.ui.cli", "serve", "--store", str(store), "--port", str(port),
               *map(str, flags)]
    with open(log, "w") as out:
        server = subprocess.Popen(command, cwd=REPO, env=dict(os.environ, GRADIO_ANALYTICS_ENABLED="False",
                                                              **(env or {})), stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while not _answers(url):
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            raise AssertionError(f"server did not start: {log.read_text()[-3000:]}")
        time.sleep(0.3)
    try:
        yield url, server
    finally:
        server.terminate()
        server.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def server(library):
    """The plain server, as `vitsearch serve --store S` starts it: (url, process)."""
    with serving(library["store"]) as running:
        yield running


@pytest.fixture(scope="module")
def api(server):
    with httpx.Client(base_url=server[0] + PREFIX, timeout=120) as client:
        yield client


def hashes(folder: Path) -> dict[str, str]:
    """Every file under `folder` (links as their target's name) -> its SHA-256."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            found[str(path)] = "link:" + os.readlink(path)
        elif path.is_file():
            found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def assert_error(response: httpx.Response, code: str) -> None:
    """A JSON error with this code, under the status CODES gives it."""
    assert response.headers["content-type"].startswith("application/json"), response.text[:300]
    body = response.json()
    assert body.get("code") == code and body.get("message"), (response.status_code, body)
    assert response.status_code == CODES[code], (response.status_code, body)


# ---- search equals the command line ----

def upload(path: Path, **fields) -> dict:
    return {"files": {"image": (path.name, path.read_bytes(), "image/jpeg")},
            "data": {key: ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
                     for key, v in fields.items()}}


def queries(lib) -> dict[str, tuple[dict, list, Path | None]]:
    """name -> (the API request, the same query's `vitsearch search` arguments, the uploaded file)."""
    i, photos, label = lib["ids"], lib["photos"], lib["label"]
    new, own = lib["queries"] / "new.jpg", lib["queries"] / "scene-004.jpg"
    box = ",".join(map(str, BOX))
    return {
        "upload": (upload(new, k=5), [new, "-k", 5], new),
        "upload of an indexed photo's bytes": (upload(own, k=8), [own, "-k", 8], own),
        "upload min_score": (upload(new, k=20, min_score=0.5), [new, "-k", 20, "--min-score", 0.5], new),
        "upload where": (upload(new, where="width >= 300 AND name LIKE 'scene-%'"),
                         [new, "--where", "width >= 300 AND name LIKE 'scene-%'"], new),
        "upload collapse": (upload(own, k=6, collapse="true"), [own, "-k", 6, "--collapse"], own),
        "upload box": (upload(new, k=5, box=BOX), [new, "-k", 5, "--box", box], new),
        "upload negatives": (upload(new, k=5, negatives=[i["scene-002.jpg"], i["scene-005.jpg"]]),
                             [new, "-k", 5, "--not", f"id:{i['scene-002.jpg']}", "--not", f"id:{i['scene-005.jpg']}"],
                             new),
        "upload label filter": (upload(new, label=label, k=5), [new, "--label", label, "-k", 5], new),
        "id": ({"json": {"id": i["scene-000.jpg"], "k": 5}}, [f"id:{i['scene-000.jpg']}", "-k", 5], None),
        "id collapse": ({"json": {"id": i["scene-000.jpg"], "k": 6, "collapse": True}},
                        [f"id:{i['scene-000.jpg']}", "-k", 6, "--collapse"], None),
        "indexed path": ({"json": {"path": str(photos / "scene-003.jpg"), "k": 7}},
                         [photos / "scene-003.jpg", "-k", 7], None),
        "ids together": ({"json": {"ids": [i["scene-001.jpg"], i["scene-006.jpg"]], "k": 5}},
                         [f"id:{i['scene-001.jpg']}", f"id:{i['scene-006.jpg']}", "--combine", "-k", 5], None),
        "id and paths together": ({"json": {"id": i["scene-002.jpg"], "paths": [str(photos / "scene-008.jpg")]}},
                                  [f"id:{i['scene-002.jpg']}", photos / "scene-008.jpg", "--combine"], None),
        "id with negatives": ({"json": {"id": i["scene-003.jpg"], "negatives": [i["scene-007.jpg"]], "k": 5}},
                              [f"id:{i['scene-003.jpg']}", "--not", f"id:{i['scene-007.jpg']}", "-k", 5], None),
        "ids with a path negative": (
            {"json": {"ids": [i["scene-004.jpg"], i["scene-009.jpg"]], "negatives": [str(photos / "scene-000.jpg")]}},
            [f"id:{i['scene-004.jpg']}", f"id:{i['scene-009.jpg']}", "--not", photos / "scene-000.jpg"], None),
        "id box": ({"json": {"id": i["scene-005.jpg"], "box": list(BOX), "k": 5}},
                   [f"id:{i['scene-005.jpg']}", "--box", box, "-k", 5], None),
        "label alone": ({"json": {"label": label, "k": 50}}, ["--label", label, "-k", 50], None),
        "id label filter": ({"json": {"id": i["scene-006.jpg"], "label": label}},
                            [f"id:{i['scene-006.jpg']}", "--label", label], None),
        "id where video": ({"json": {"id": i["scene-003.jpg"], "where": "kind = 'video'"}},
                           [f"id:{i['scene-003.jpg']}", "--where", "kind = 'video'"], None),
        "path min_score": ({"json": {"path": str(photos / "scene-007.jpg"), "k": 50, "min_score": 0.6}},
                           [photos / "scene-007.jpg", "-k", 50, "--min-score", 0.6], None),
    }


QUERY_NAMES = ["upload", "upload of an indexed photo's bytes", "upload min_score", "upload where", "upload collapse",
               "upload box", "upload negatives", "upload label filter", "id", "id collapse", "indexed path",
               "ids together", "id and paths together", "id with negatives", "ids with a path negative", "id box",
               "label alone", "id label filter", "id where video", "path min_score"]


def test_there_are_twenty_queries(library):
    assert list(queries(library)) == QUERY_NAMES


@pytest.mark.parametrize("name", QUERY_NAMES)
def test_search_answers_what_search_json_prints(library, api, name):
    request, arguments, uploaded = queries(library)[name]
    cli = run_cli("search", *arguments, "--store", library["store"], "--json")
    assert cli.returncode == 0, cli.stderr
    expected = [json.loads(line) for line in cli.stdout.splitlines()]
    response = api.post("/search", **request)
    assert response.status_code == 200, response.text
    hits = response.json()["hits"]
    assert expected, f"{name}: the command line found nothing: a query that tests nothing"
    assert [h["id"] for h in hits] == [e["id"] for e in expected], name
    for hit, line in zip(hits, expected, strict=True):
        assert list(hit) == list(line), name  # the same keys, in the same order
        assert abs(hit.pop("score") - line.pop("score")) < 1e-6, (name, hit["id"])
        if uploaded is not None:  # the command line names the file, the API the upload
            line["query"] = line["query"].replace(str(uploaded), uploaded.name)
        assert hit == line, name


# ---- the schema, and a cleanup end to end ----

def test_schema_is_valid_openapi_and_a_cleanup_applies_and_undoes(library, api):
    from openapi_spec_validator import validate

    schema = api.get("/openapi.json").json()
    validate(schema)
    assert schema["servers"] == [{"url": PREFIX}]
    before = hashes(library["photos"])
    found = api.post("/search", **upload(library["queries"] / "scene-004.jpg", k=3))
    assert found.status_code == 200 and found.json()["hits"][0]["path"].endswith("scene-004.jpg")
    groups = api.get("/duplicates").json()
    assert groups["total"] >= 1, groups
    plan = api.post("/duplicates/plan", json={"tiers": ["identical"]}).json()
    moving = [m["path"] for g in plan["groups"] for m in g["move"]]
    assert moving == [str(library["photos"] / "scene-000-copy.jpg")], plan
    applied = api.post("/duplicates/apply", json={"plan_id": plan["plan_id"]})
    assert applied.status_code == 200, applied.text
    assert [m["path"] for m in applied.json()["moved"]] == moving
    assert not Path(moving[0]).exists()
    assert api.get("/info").json()["quarantined"] == 1
    assert_error(api.post("/duplicates/apply", json={"plan_id": plan["plan_id"]}), "unknown_plan")  # used once
    undone = api.post("/duplicates/undo")
    assert undone.status_code == 200 and undone.json()["restored"] == moving, undone.text
    assert hashes(library["photos"]) == before
    assert api.get("/info").json()["quarantined"] == 0
    assert_invariants(library["store"])


# ---- who may call ----

def route_calls(lib) -> list[tuple[str, str, object]]:
    """(method, schema path, the request's keyword arguments or a function of the answers so far)
    for every route, in an order where each succeeds: a cleanup is planned, applied, then undone."""
    image = lib["ids"]["scene-000.jpg"]
    return [
        ("GET", "/openapi.json", {}),
        ("GET", "/info", {}),
        ("GET", "/labels", {}),
        ("GET", "/images/{image_id}", {"path": f"/images/{image}"}),
        ("GET", "/images/{image_id}/thumbnail", {"path": f"/images/{image}/thumbnail", "params": {"side": 64}}),
        ("POST", "/search", {"json": {"id": image, "k": 3}}),
        ("GET", "/duplicates", {"params": {"limit": 5}}),
        ("POST", "/duplicates/plan", {"json": {"tiers": ["identical"]}}),
        ("POST", "/duplicates/apply",
         lambda answers: {"json": {"plan_id": answers.get("/duplicates/plan", {}).get("plan_id", "refused")}}),
        ("POST", "/duplicates/undo", {}),
        ("POST", "/decisions", {"json": {"kind": "not_duplicates", "ids": [image, lib["ids"]["scene-001.jpg"]]}}),
    ]


def call_every_route(lib, url: str, headers: dict) -> dict[str, httpx.Response]:
    answers, responses = {}, {}
    with httpx.Client(base_url=url + PREFIX, headers=headers, timeout=120) as http:
        for method, path, request in route_calls(lib):
            kwargs = dict(request(answers) if callable(request) else request)
            response = http.request(method, kwargs.pop("path", path), **kwargs)
            responses[path] = response
            if response.headers.get("content-type", "").startswith("application/json") and response.is_success:
                answers[path] = response.json()
    return responses


def schema_routes(url: str, headers: dict) -> set[tuple[str, str]]:
    schema = httpx.get(url + PREFIX + "/openapi.json", headers=headers, timeout=30).json()
    return {(method.upper(), path) for path, methods in schema["paths"].items() for method in methods}


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def one_byte_off(token: str) -> str:
    return token[:-1] + ("8" if token[-1] != "8" else "9")


def test_with_a_token_every_route_needs_it(library, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    user, password = LOGIN
    with serving(library["store"], "--api-token-file", token_file, "--auth", f"{user}:{password}") as (url, _):
        good = {"Authorization": f"Bearer {TOKEN}"}
        routes = {(method, path) for method, path, _ in route_calls(library)}
        assert routes == schema_routes(url, good) | {("GET", "/openapi.json")}, "a route this test does not call"
        before = hashes(library["photos"])
        wrong = [{}, {"Authorization": f"Bearer {one_byte_off(TOKEN)}"}, {"Authorization": f"Bearer {TOKEN[:-1]}"},
                 {"Authorization": f"bearer {TOKEN} x"}, {"Authorization": TOKEN}, basic(user, TOKEN),
                 basic(user, password)]  # with a token, the page's login no longer opens the API
        for headers in wrong:
            for path, response in call_every_route(library, url, headers).items():
                assert_error(response, "unauthorized")
                assert response.headers["www-authenticate"] == "Bearer", (path, headers)
        assert hashes(library["photos"]) == before, "a refused call changed the library"
        responses = call_every_route(library, url, good)
        for path, response in responses.items():
            assert response.status_code == 200, (path, response.text[:300])
        thumbnail = responses["/images/{image_id}/thumbnail"]
        assert thumbnail.headers["content-type"] == "image/jpeg" and thumbnail.content[:2] == b"\xff\xd8"
        assert hashes(library["photos"]) == before


def test_with_the_pages_login_basic_opens_the_api_and_nothing_else(library):
    user, password = LOGIN
    with serving(library["store"], "--auth", f"{user}:{password}") as (url, _):
        cookies = httpx.post(url + "/login", data={"username": user, "password": password}, timeout=30).cookies
        assert cookies, "the page's own login form works"
        wrong = [{}, basic(user, password + "x"), basic(user + "x", password), basic(user, ""),
                 {"Authorization": f"Bearer {password}"}, {"Authorization": "Basic !!not-base64!!"},
                 {"Authorization": f"Basic {user}:{password}"}]
        for headers in wrong:
            for path, response in call_every_route(library, url, headers).items():
                assert_error(response, "unauthorized")
                assert response.headers["www-authenticate"].startswith("Basic"), (path, headers)
        with httpx.Client(cookies=cookies, timeout=30) as browser:  # the page's session is not the API's login
            assert_error(browser.get(url + PREFIX + "/info"), "unauthorized")
        for path, response in call_every_route(library, url, basic(user, password)).items():
            assert response.status_code == 200, (path, response.text[:300])


def test_read_only_refuses_writes_and_serves_reads(library):
    before = hashes(library["photos"])
    with serving(library["store"], "--read-only") as (url, _):
        responses = call_every_route(library, url, {})
        for path in ("/duplicates/apply", "/duplicates/undo", "/decisions"):
            assert_error(responses[path], "writes_disabled")
        for path, response in responses.items():
            if path not in ("/duplicates/apply", "/duplicates/undo", "/decisions"):
                assert response.status_code == 200, (path, response.text[:300])
    assert hashes(library["photos"]) == before


def cors_headers(response: httpx.Response) -> dict:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


@pytest.fixture(scope="module")
def cors_server(library):
    with serving(library["store"], "--cors-origin", ORIGIN) as running:
        yield running


def test_no_cors_by_default_and_only_for_the_given_origin(server, cors_server):
    for origin in ("https://elsewhere.example", ORIGIN):
        answer = httpx.get(server[0] + PREFIX + "/info", headers={"Origin": origin})
        assert answer.status_code == 200 and "access-control-allow-origin" not in answer.headers
    allowed = httpx.get(cors_server[0] + PREFIX + "/info", headers={"Origin": ORIGIN})
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == ORIGIN
    other = httpx.get(cors_server[0] + PREFIX + "/info", headers={"Origin": "https://elsewhere.example"})
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers


# The page's server (Gradio) has CORS rules of its own for the page; ui/api/ahead.py keeps them off the API.

def test_no_cors_for_local_origins_by_default(server):
    answer = httpx.get(server[0] + PREFIX + "/info", headers={"Origin": "http://localhost:5173"})
    assert answer.status_code == 200 and cors_headers(answer) == {}


def test_no_cors_for_any_origin_when_reached_by_name(server):
    answer = httpx.get(server[0] + PREFIX + "/info", headers={"Origin": "https://evil.example", "Host": "photos.lan"})
    assert answer.status_code == 200 and cors_headers(answer) == {}


def test_no_preflight_is_answered_by_default(server):
    preflight = httpx.options(server[0] + PREFIX + "/search", headers={
        "Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"})
    assert cors_headers(preflight) == {}


def test_a_preflight_from_the_given_origin_is_allowed(cors_server):
    preflight = httpx.options(cors_server[0] + PREFIX + "/search", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status_code == 200
    assert preflight.headers.get("access-control-allow-origin") == ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in preflight.headers
    other = httpx.options(cors_server[0] + PREFIX + "/search", headers={
        "Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in other.headers


def test_the_page_keeps_its_own_cors_rules(server):
    """Only /api/v1 leaves the page's middleware: the page's routes still pass through it."""
    answer = httpx.get(server[0] + "/config", headers={"Origin": "http://localhost:5173"})
    assert answer.headers.get("access-control-allow-origin") == "http://localhost:5173"


# ---- nothing but thumbnails ----

def probe_targets(lib) -> list[str]:
    photos, store = lib["photos"], lib["store"]
    return ["/etc/passwd", str(store / "metadata.duckdb"), str(store / "metadata.duckdb.wal"),
            str(store / "vectors.faiss"), str(photos / "scene-001.jpg"),
            str(photos / "passwd-link.jpg"), str(photos / "clip.mp4"), f"{photos}/../photos/scene-001.jpg",
            f"{photos}/../../../../../etc/passwd", "../../../../etc/passwd", "file:///etc/passwd",
            str(photos / "scene-001.jpg").replace("/", "//")]


def raw_get(url: str, target: str) -> tuple[int, bytes]:
    """GET a request target exactly as written (httpx would normalise the dots away)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", target)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def secret_bytes(lib) -> list[bytes]:
    """Bytes that must never come back: the system's, the store's, the originals'."""
    store, photos = lib["store"], lib["photos"]
    return [b"root:", (store / "metadata.duckdb").read_bytes()[:64], (store / "vectors.faiss").read_bytes()[:64],
            *(p.read_bytes()[-256:] for p in sorted(photos.glob("*.jpg")) if not p.is_symlink()),
            (photos / "clip.mp4").read_bytes()[:64]]


def test_originals_store_files_and_system_files_are_never_served(library, server, api):
    url, secrets = server[0], secret_bytes(library)

    def never_leaks(status: int, content: bytes, what) -> None:
        assert status in (400, 404, 405, 422), (what, status, content[:200])
        assert not any(secret in content for secret in secrets), what

    for target in probe_targets(library):
        for form in (target, quote(target, safe=""), target.replace("..", "%2e%2e"), quote(quote(target, safe=""))):
            for route in ("/images/{}", "/images/{}/thumbnail", "/{}", "/file={}", "/thumbnails/{}"):
                for raw in (PREFIX + route.format(form), PREFIX + route.format(form.lstrip("/"))):
                    never_leaks(*raw_get(url, raw), raw)
        some, indexed = library["ids"]["scene-002.jpg"], target in library["paths"]
        for body, as_path in (({"path": target}, True), ({"paths": [target]}, True), ({"id": target}, False),
                              ({"id": some, "negatives": [target]}, True), ({"ids": [target]}, False)):
            response = api.post("/search", json=body)
            if indexed and as_path:
                assert response.status_code == 200, body  # an indexed path is a query like any: its hits only
                assert not any(secret in response.content for secret in secrets), body
            else:
                never_leaks(response.status_code, response.content, body)
                assert response.json()["code"] in ("unknown_path", "invalid_request"), (body, response.text)
        forged = api.post("/search", files={"image": (None, target)})  # a server path as if uploaded
        never_leaks(forged.status_code, forged.content, ("form", target))
        plan = api.post("/duplicates/plan", json={"against": target, "protect": [target]})
        assert not any(secret in plan.content for secret in secrets)
    gps = api.get(f"/images/{library['ids']['gps.jpg']}/thumbnail", params={"side": 256})
    assert gps.status_code == 200 and b"SecretCam" not in gps.content and b"Exif" not in gps.content
    assert gps.content != (library["photos"] / "gps.jpg").read_bytes()


# ---- bad input ----

def chunked_upload(megabytes: int):
    """A multipart body streamed without a Content-Length (the limit counts it as it arrives)."""
    yield b'--b\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n\r\n\xff\xd8\xff'
    for _ in range(megabytes):
        yield os.urandom(1 << 20)
    yield b"\r\n--b--\r\n"


def bad_requests(lib) -> list[tuple[str, dict, str]]:
    """(method path, request, expected code)"""
    image, other = lib["ids"]["scene-000.jpg"], lib["ids"]["scene-001.jpg"]
    cut = scene_bytes(3)[:1500]
    raw = {"headers": {"content-type": "application/json"}}
    multipart = {"content-type": "multipart/form-data; boundary=b"}
    files = [("notes.jpg", b"just text"), ("empty.jpg", b""), ("x.svg", b'<svg xmlns="http://www.w3.org/2000/svg"/>'),
             ("x.pdf", b"%PDF-1.4\n1 0 obj\n"), ("x.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n"), ("page.html", b"<html>"),
             ("cut.jpg", cut), ("bomb.png", bomb_png(13000))]
    return [
        ("POST /search", {"files": {"image": ("big.jpg", b"\xff\xd8\xff" + os.urandom(30 << 20))}}, "too_large"),
        ("POST /search", {"content": chunked_upload(30), "headers": multipart},
         "too_large"),
        ("POST /search", {"content": b'{"id": 1, "where": "' + b"x" * (27 << 20) + b'"}', **raw}, "too_large"),
        ("POST /duplicates/plan", {"content": b'{"rules": "' + b"x" * (2 << 20) + b'"}', **raw}, "too_large"),
        *(("POST /search", {"files": {"image": f}}, "unreadable_image") for f in files),
        ("POST /search", {"content": b'{"id": %d, "min_score": NaN}' % image, **raw}, "invalid_request"),
        ("POST /search", {"content": b'{"id": %d, "min_score": 1e999}' % image, **raw}, "invalid_request"),
        ("POST /search", {"content": b'{"id": %d, "box": [0, 0, Infinity, 50]}' % image, **raw}, "invalid_request"),
        ("POST /search", {"content": b'{"id": %d, "k": -Infinity}' % image, **raw}, "invalid_request"),
        ("POST /search", {"files": {"image": ("q.jpg", scene_bytes(4))}, "data": {"min_score": "nan"}},
         "invalid_request"),
        ("POST /search", {"files": {"image": ("q.jpg", scene_bytes(4))}, "data": {"box": "0,0,inf,50"}},
         "invalid_request"),
        (f"GET /images/{image}/thumbnail", {"params": {"at": "nan"}}, "invalid_request"),
        (f"GET /images/{image}/thumbnail", {"params": {"side": "inf"}}, "invalid_request"),
        ("GET /duplicates", {"params": {"near": "NaN"}}, "invalid_request"),
        ("POST /duplicates/plan", {"content": b'{"similar": Infinity}', **raw}, "invalid_request"),
        ("POST /search", {"json": {"id": 999_999}}, "unknown_id"),
        ("POST /search", {"json": {"ids": [image, 999_999]}}, "unknown_id"),
        ("POST /search", {"json": {"id": image, "negatives": [999_999]}}, "unknown_id"),
        ("POST /search", {"json": {"path": str(lib["photos"] / "nowhere.jpg")}}, "unknown_path"),
        ("GET /images/999999", {}, "unknown_id"),
        ("GET /images/999999/thumbnail", {}, "unknown_id"),
        ("GET /images/-1", {}, "unknown_id"),
        ("POST /decisions", {"json": {"kind": "keep", "ids": [999_999]}}, "unknown_id"),
        ("POST /duplicates/apply", {"json": {"plan_id": "no-such-plan"}}, "unknown_plan"),
        *(("POST /search", {"json": {"id": image, "where": where}}, "bad_request") for where in (
            "1=1; DROP TABLE images", "id IN (SELECT id FROM images)", "read_text('/etc/passwd') <> ''",
            "path = '' OR 1=1 --", "1=1 UNION SELECT * FROM images", "(SELECT count(*) FROM duckdb_tables()) > 0",
            "setseed(0.5) IS NULL", "getenv('HOME') <> ''")),
        ("POST /search", {"json": {"ids": list(range(10_000))}}, "invalid_request"),
        ("POST /search", {"json": {"paths": ["/x.jpg"] * 10_000}}, "invalid_request"),
        ("POST /search", {"json": {"id": image, "negatives": list(range(10_000))}}, "invalid_request"),
        ("POST /search", {"files": {"image": ("q.jpg", scene_bytes(4))}, "data": {"ids": ",".join(["1"] * 10_000)}},
         "invalid_request"),
        ("POST /decisions", {"json": {"kind": "not_duplicates", "ids": list(range(10_000))}}, "invalid_request"),
        ("POST /search", {"json": {"id": image, "k": 10_000_000}}, "invalid_request"),
        ("POST /search", {"content": b"[" * 100_000 + b"]" * 100_000, **raw}, "invalid_request"),
        ("POST /search", {"content": b"\xff\xfe not json", **raw}, "invalid_request"),
        ("POST /search", {"json": [image]}, "invalid_request"),
        ("POST /search", {"json": {"id": image, "unknown": 1}}, "invalid_request"),
        ("POST /decisions", {"json": {"kind": "keep", "ids": [image, other]}}, "invalid_request"),
        ("POST /search", {"json": {}}, "bad_request"),
    ]


def test_bad_input_is_a_json_error_and_memory_stays_bounded(library, server, api):
    url, process = server
    warm = api.post("/search", **upload(library["queries"] / "new.jpg", k=3))  # the model is loaded before measuring
    assert warm.status_code == 200
    before, store_files = peak_rss_mb(process.pid), hashes(library["store"])
    info = api.get("/info").json()
    for what, request, code in bad_requests(library):
        method, path = what.split(" ", 1)
        assert_error(api.request(method, path, **request), code)
    grown = peak_rss_mb(process.pid) - before
    print(f"\nserver peak RSS {before:.0f} MB before the bad requests, +{grown:.0f} MB after them")
    assert grown < 100, f"the server's peak memory grew by {grown:.0f} MB"
    assert api.get("/info").json() == info and hashes(library["store"]) == store_files
    assert api.post("/search", json={"id": library["ids"]["scene-000.jpg"], "k": 2}).status_code == 200
    assert_invariants(library["store"])


# ---- load ----

@pytest.mark.slow
def test_concurrent_clients_while_the_index_grows(library, server):
    """8 clients for 60 s (searches by id and upload, info, thumbnails) while `vitsearch index`
    adds photos to the same store: no errors but documented 409s; p50/p95 latency printed."""
    url = server[0] + PREFIX
    ids = sorted(library["ids"].values())
    query = (library["queries"] / "new.jpg").read_bytes()
    added = library["photos"] / "added"
    write_scenes(added, range(100, 160))
    stop = time.monotonic() + 60
    latencies: list[float] = []
    errors: list[str] = []
    busy = [0]
    lock = threading.Lock()

    def client(n: int) -> None:
        calls = [lambda h, i: h.post("/search", json={"id": i, "k": 10}),
                 lambda h, i: h.post("/search", files={"image": ("q.jpg", query)}, data={"k": "5"}),
                 lambda h, i: h.get("/info"),
                 lambda h, i: h.get(f"/images/{i}/thumbnail", params={"side": 128 + 16 * (n % 4)})]
        with httpx.Client(base_url=url, timeout=120) as http:
            step = n
            while time.monotonic() < stop:
                started = time.monotonic()
                response = calls[step % len(calls)](http, ids[step % len(ids)])
                took = time.monotonic() - started
                step += 1
                with lock:
                    latencies.append(took)
                    if response.status_code == 409 and response.json().get("code") == "store_busy":
                        busy[0] += 1
                    elif response.status_code != 200:
                        errors.append(f"{response.request.method} {response.request.url}: "
                                      f"{response.status_code} {response.text[:200]}")

    started = time.monotonic()
    indexer = subprocess.Popen([sys.executable, "-m", "vitsearch.ui.cli", "index", str(library["photos"]),
                                "--store", str(library["store"]), "--weights", "random", "--batch-size", "4"],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert indexer.wait(timeout=600) == 0, indexer.stderr.read()[-3000:]
    indexed = time.monotonic() - started
    latencies.sort()
    p50, p95 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.95)]
    print(f"\n{len(latencies)} requests from 8 clients in 60 s while `index` added 60 photos ({indexed:.0f} s): "
          f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, {busy[0]} store_busy, {len(errors)} errors")
    assert errors == [], errors[:5]
    assert httpx.get(url + "/info", timeout=60).json()["images"] == len(library["ids"]) - 1 + 60  # the clip is a video
    assert_invariants(library["store"])

"""The web page, live: a real `vitsearch serve`, Debian's chromium driven by Playwright,
gradio_client calls, and HTTP probes of the file routes."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from PIL import Image

from tests.conftest import REPO, run_cli, scene_bytes, write_scenes

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]
ARTIFACTS = REPO / "tests" / "artifacts"
HOSTILE_NAME = "<img src=x onerror=window.__xss=1>.jpg"
MARKDOWN_NAMES = ("**bold**.jpg", "[undo](http:127.0.0.1:9).jpg")  # copies of scene-005


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_gps_exif(data: bytes) -> bytes:
    image = Image.open(io.BytesIO(data))
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (48.0, 51.0, 24.0)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes())
    return buffer.getvalue()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui")
    photos = root / "photos"
    write_scenes(photos, range(8))
    import skimage

    for name in ("chelsea.png", "coffee.png", "rocket.jpg"):  # real photos (public domain)
        image = Image.open(Path(skimage.__file__).parent / "data" / name).convert("RGB")
        image.save(photos / f"{Path(name).stem}.jpg", quality=92)
    shutil.copy(photos / "scene-000.jpg", photos / "scene-000-copy.jpg")  # a planted duplicate pair
    (photos / "gps.jpg").write_bytes(with_gps_exif(scene_bytes(20, "JPEG")))
    (photos / HOSTILE_NAME).write_bytes(scene_bytes(21, "JPEG"))
    for name in MARKDOWN_NAMES:
        shutil.copy(photos / "scene-005.jpg", photos / name)
    os.symlink("/etc/passwd", photos / "passwd-link.jpg")
    (photos / "broken.jpg").write_bytes(b"not an image at all")
    store = root / "store"
    result = run_cli("index", photos, "--store", store, "--weights", "random")
    assert result.returncode == 0, result.stderr
    with serving(store) as (url, server, port):
        yield {"url": url, "photos": photos, "store": store, "root": root, "server": server, "port": port}


@contextlib.contextmanager
def serving(store):
    """`vitsearch serve` on a free port, up and answering: (url, process, port)."""
    port = free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    command = [sys.executable, "-m", "vitsearch.ui.cli", "serve", "--store", str(store), "--port", str(port)]
    server = subprocess.Popen(command,
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"server did not start: {server.communicate()[1][-3000:]}")
        time.sleep(0.5)
    try:
        yield url, server, port
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def gallery_captions(page, gallery_id: str) -> list[str]:
    return [c.strip() for c in page.locator(f"#{gallery_id} .caption-label").all_inner_texts()]


def test_search_in_a_real_browser(served, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = searched_page(served, browser, "chelsea.jpg")
    captions = gallery_captions(page, "results-gallery")
    assert caption_names(page, "results-gallery")[0] == "chelsea.jpg" and float(captions[0].split(" · ")[0]) >= 0.99
    assert page.locator("#results-gallery img").count() == len(captions) > 1
    page.screenshot(path=str(ARTIFACTS / "search-tab.png"), full_page=True)

    page.locator("#results-gallery button.thumbnail-item").nth(1).click()
    page.wait_for_function("document.querySelector('#metadata') && "
                           "document.querySelector('#metadata').innerText.includes('path')")
    chosen = caption_names(page, "results-gallery")[1]
    page.click("#search-from-this")
    page.wait_for_function(
        f"(() => {{ const c = document.querySelector('#results-gallery .caption-label');"
        f" return c && c.innerText.trim().split(' (+')[0].endsWith({chosen!r}); }})()", timeout=60_000)

    # A file name holding HTML is shown as text and runs nothing.
    page.fill("#path-find textarea, #path-find input", "onerror")
    page.wait_for_timeout(1500)
    page.click("#search-button")
    page.wait_for_timeout(3000)
    assert page.evaluate("window.__xss") is None
    page.close()


def pick_group(page, holding: str) -> str:
    """Choose the duplicate group whose gallery shows `holding`; returns its captions."""
    page.click("#find-dupes")
    page.wait_for_function("document.querySelectorAll('#dupes-gallery .caption-label').length >= 2", timeout=60_000)
    for number in range(1, 20):
        captions = " | ".join(gallery_captions(page, "dupes-gallery"))
        if holding in captions:
            return captions
        page.click("#group-pick input")
        page.get_by_role("option", name=f"{number + 1}. ", exact=False).first.click()
        page.wait_for_timeout(1000)
    raise AssertionError(f"no group shows {holding}")


def test_duplicates_and_index_tabs(served, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(served["url"])
    page.get_by_role("tab", name="Duplicates").click()
    captions = pick_group(page, "scene-000-copy.jpg")
    assert "scene-000.jpg" in captions and "scene-000-copy.jpg" in captions and "★ keep" in captions
    page.screenshot(path=str(ARTIFACTS / "duplicates-tab.png"), full_page=True)
    page.get_by_role("tab", name="Index").click()
    page.wait_for_function("document.querySelector('#index-overview').innerText.includes('images indexed')")
    overview = page.inner_text("#index-overview")
    assert "1 failed" in overview and "unidentified: 1" in overview
    page.wait_for_function("document.querySelector('#failures').innerText.includes('broken.jpg')")
    assert page.locator("#random-weights-banner").count() == 1
    page.screenshot(path=str(ARTIFACTS / "index-tab.png"), full_page=True)
    page.close()


def test_api_through_gradio_client(served):
    from gradio_client import Client, handle_file

    client = Client(served["url"], verbose=False)
    gallery, status = client.predict(
        handle_file(str(served["photos"] / "gps.jpg")), None, 5, 0.0, "", "", "", None, None, [],
        api_name="/run_search",
    )
    assert len(gallery) == 5 and gallery[0]["caption"].endswith("gps.jpg")
    thumbnail = Image.open(gallery[0]["image"])
    assert max(thumbnail.size) <= 256
    assert not thumbnail.getexif() and "exif" not in thumbnail.info, "served thumbnails carry no EXIF/GPS"
    filtered, _ = client.predict(
        handle_file(str(served["photos"] / "gps.jpg")), None, 20, 0.0, "", "", "", 10_000, None, [],
        api_name="/run_search",
    )
    assert filtered == []


def test_server_side_paths_are_not_accepted_as_uploads(served):
    """Raw API calls naming files on the server as if uploaded (gradio_client would upload them)."""
    targets = ("/etc/passwd", str(served["photos"] / "scene-001.jpg"), str(served["store"] / "metadata.duckdb"))
    with httpx.Client(base_url=served["url"], timeout=60) as http:
        for path in targets:
            forged = {"path": path, "meta": {"_type": "gradio.FileData"}}
            call = http.post("/gradio_api/call/run_search",
                             json={"data": [forged, None, 5, 0.0, "", "", "", None, None, []]})
            assert call.status_code == 200
            events = http.get(f"/gradio_api/call/run_search/{call.json()['event_id']}").text
            assert "event: error" in events and "event: complete" not in events, (path, events[:300])


def probe_urls(served) -> list[str]:
    photos, store = served["photos"], served["store"]
    targets = ["/etc/passwd", str(store / "metadata.duckdb"), str(store / "metadata.duckdb.wal"),
               str(store / "vectors.faiss"), str(photos / "scene-001.jpg"), str(photos / "passwd-link.jpg"),
               f"{photos}/../photos/scene-001.jpg", f"{photos}/../../../../etc/passwd"]
    urls = []
    for target in targets:
        for prefix in ("/gradio_api/file=", "/file="):
            urls.append(prefix + target)
            urls.append(prefix + quote(target, safe=""))
            urls.append(prefix + target.replace("..", "%2e%2e"))
            urls.append(prefix + quote(quote(target, safe=""), safe=""))
    return urls


def test_file_routes_refuse_everything_but_generated_files(served):
    with httpx.Client(base_url=served["url"], timeout=10) as http:
        for url in probe_urls(served):
            response = http.get(url)
            assert response.status_code in (400, 403, 404), (url, response.status_code)
            assert b"root:" not in response.content and b"DUCK" not in response.content[:64]


def test_oversized_upload_is_rejected(served):
    payload = b"\xff\xd8\xff" + os.urandom(26 * 1024 * 1024)
    response = httpx.post(f"{served['url']}/gradio_api/upload",
                          files={"files": ("big.jpg", payload, "image/jpeg")}, timeout=60)
    assert response.status_code in (400, 413), response.status_code


def test_non_loopback_without_auth_is_refused(tmp_path, served):
    result = run_cli("serve", "--store", served["store"], "--host", "0.0.0.0", timeout=60)
    assert result.returncode == 2 and "--auth" in result.stderr


def test_names_in_the_move_confirmation_read_exactly_as_they_are(served, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(served["url"])
    page.get_by_role("tab", name="Duplicates").click()
    pick_group(page, "bold")
    page.get_by_role("button", name="Quarantine the others (dry run)").click()
    outcome = page.locator("#dupes-outcome textarea")
    page.wait_for_function("document.querySelector('#dupes-outcome textarea').value.includes('Dry run')")
    text = outcome.input_value()
    moved = [name for name in MARKDOWN_NAMES if name in text]
    assert moved, text  # one of them is the keeper, the other is listed to move, name for name
    assert page.locator("#dupes-outcome a").count() == 0 and page.locator("#dupes-outcome strong").count() == 0
    assert all((served["photos"] / name).exists() for name in MARKDOWN_NAMES), "a dry run moves nothing"
    page.close()


def test_status_line_shows_the_filter_as_written(served, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(served["url"])
    page.wait_for_selector("#query-image")
    page.get_by_text("Filters").click()
    page.get_by_label("Folder (path prefix)").fill("it's_*here*")
    page.set_input_files("#query-image input[type=file]", str(served["photos"] / "chelsea.jpg"))
    page.wait_for_function("document.querySelector('#search-status').innerText.includes('results')",
                           timeout=120_000)
    status = page.inner_text("#search-status")
    assert "starts_with(path, 'it''s_*here*')" in status, status
    assert "&#" not in status and page.locator("#search-status em").count() == 0
    page.close()


def bomb_png(side: int) -> bytes:
    """A small grey PNG that declares side x side pixels (valid, highly compressible rows)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = b"\x00" + b"\x80" * side
    body = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_a_huge_declared_upload_is_refused_before_decoding(served, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bomb_png(13000))  # 169 MP: inside the 180 MP index limit, ~500 MB decoded
    assert bomb.stat().st_size < 1 << 20
    before = peak_rss_mb(served["server"].pid)
    client = Client(served["url"], verbose=False)
    with pytest.raises(AppError, match="at most 40 MP") as refused:
        client.predict(handle_file(str(bomb)), None, 5, 0.0, "", "", "", None, None, [], api_name="/run_search")
    assert "vitsearch-ui-" not in str(refused.value), "no server paths in messages"
    assert peak_rss_mb(served["server"].pid) - before < 200, "the server decoded the bomb"


def test_an_upload_that_is_not_an_image_gets_a_clean_message(served, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    fake = tmp_path / "notes.jpg"
    fake.write_text("just text")
    client = Client(served["url"], verbose=False)
    with pytest.raises(AppError) as refused:
        client.predict(handle_file(str(fake)), None, 5, 0.0, "", "", "", None, None, [], api_name="/run_search")
    message = str(refused.value)
    assert "not an image" in message and "vitsearch-ui-" not in message and "Traceback" not in message


def test_request_bodies_are_bounded(served):
    huge = b'{"data": ["' + b"A" * (3 << 20) + b'"], "fn_index": 0, "session_hash": "x"}'
    response = httpx.post(f"{served['url']}/gradio_api/queue/join", content=huge,
                          headers={"content-type": "application/json"}, timeout=60)
    assert response.status_code == 413
    assert httpx.get(served["url"], timeout=10).status_code == 200, "the server keeps serving"


def test_concurrent_searches_never_get_a_torn_thumbnail(served):
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client, handle_file

    def search(_):
        client = Client(served["url"], verbose=False)
        gallery, _ = client.predict(handle_file(str(served["photos"] / "rocket.jpg")), None, 12, 0.0, "", "", "",
                                    None, None, [], api_name="/run_search")
        for item in gallery:
            Image.open(item["image"]).load()  # a torn file fails to decode
        return len(gallery)

    with ThreadPoolExecutor(6) as pool:
        assert all(n == 12 for n in pool.map(search, range(12)))


def test_a_busy_port_is_a_usage_error(served):
    result = run_cli("serve", "--store", served["store"], "--port", served["port"], timeout=120)
    assert result.returncode == 2 and "--port" in result.stderr and "Traceback" not in result.stderr


def test_sigterm_removes_the_private_temporary_folder(served, tmp_path):
    import signal

    port = free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", TMPDIR=str(tmp_path))
    command = [sys.executable, "-m", "vitsearch.ui.cli", "serve", "--store", str(served["store"]), "--port", str(port)]
    server = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("vitsearch-ui-*")) or not _answers(f"http://127.0.0.1:{port}"):
        assert server.poll() is None and time.monotonic() < deadline, server.communicate()[1][-2000:]
        time.sleep(0.3)
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=60)
    assert not list(tmp_path.glob("vitsearch-ui-*"))


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def served_index(served):
    from vitsearch.search import ImageIndex

    return ImageIndex.open(served["store"])


def caption_names(page, gallery_id: str) -> list[str]:
    return [c.split(" · ", 1)[1].split(" (+")[0] for c in gallery_captions(page, gallery_id)]


def searched_page(served, browser, photo: str, height: int = 1000, at_least: int = 1):
    """A new page that has searched with photos/`photo` and shows at least `at_least` results."""
    page = browser.new_page(viewport={"width": 1400, "height": height})
    page.goto(served["url"])
    page.wait_for_selector("#query-image")
    page.set_input_files("#query-image input[type=file]", str(served["photos"] / photo))
    page.wait_for_function(f"document.querySelectorAll('#results-gallery .caption-label').length >= {at_least}",
                           timeout=120_000)
    return page


def test_label_search_box_completes_a_class_and_lists_its_images(served, browser):
    from vitsearch.search.labels import label_counts

    index = served_index(served)
    name, _ = label_counts(index.store)[0]  # the store's most frequent best label
    expected = [Path(h.path).name for h in index.search_label(name)]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(served["url"])
    field = page.locator("#label-pick input")
    field.fill(name.split(",")[0][:4])
    page.get_by_role("option", name=name, exact=False).first.click()  # completion from the store's labels
    page.click("#label-search")
    page.wait_for_function("document.querySelector('#search-status').innerText.includes('labelled')",
                           timeout=60_000)
    page.wait_for_function(f"document.querySelectorAll('#results-gallery .caption-label').length == {len(expected)}")
    assert caption_names(page, "results-gallery") == expected
    page.wait_for_function("document.querySelector('#label-facets').innerText.includes('Labels here')")
    assert name.split(",")[0] in page.inner_text("#label-facets")
    page.close()


def test_a_region_drawn_on_the_query_image_searches_that_region(served, browser):
    from vitsearch.search.region import parse_box

    query = served["photos"] / "chelsea.jpg"
    page = searched_page(served, browser, query.name)
    image = page.locator("#query-image img").first
    image.wait_for()
    box = image.bounding_box()
    image.click(position={"x": box["width"] * 0.15, "y": box["height"] * 0.2})
    page.wait_for_function("document.querySelector('#region-note').innerText.includes('first corner')")
    image.click(position={"x": box["width"] * 0.6, "y": box["height"] * 0.75})
    page.wait_for_function("document.querySelector('#region-box textarea, #region-box input').value.includes(',')")
    region = page.input_value("#region-box textarea, #region-box input")
    x0, y0, x1, y1 = parse_box(region)
    with Image.open(query) as original:
        width, height = original.size
    assert 0.05 * width < x0 < 0.25 * width and 0.5 * width < x1 < 0.7 * width, (region, width)
    assert 0.1 * height < y0 < 0.3 * height and 0.65 * height < y1 < 0.85 * height, (region, height)
    page.click("#region-search")
    page.wait_for_function("document.querySelector('#search-status').innerText.includes('from region')",
                           timeout=60_000)
    expected = served_index(served).search(str(query), k=12, box=(x0, y0, x1, y1), collapse=True)
    page.wait_for_function(f"document.querySelectorAll('#results-gallery .caption-label').length == {len(expected)}")
    assert caption_names(page, "results-gallery") == [Path(h.path).name for h in expected]
    page.screenshot(path=str(ARTIFACTS / "region-search.png"), full_page=True)
    page.close()


def test_copies_expand_and_a_region_of_a_result_searches(served, browser):
    from vitsearch.search.region import parse_box

    page = searched_page(served, browser, "scene-005.jpg", height=1400)
    assert "copies)" in gallery_captions(page, "results-gallery")[0], "its two byte-identical copies fold into it"
    page.locator("#results-gallery button.thumbnail-item").first.click()
    page.wait_for_function("document.querySelector('#preview img')")
    page.get_by_text("Copies folded into the selected result").click()
    page.click("#show-copies")
    page.wait_for_function("document.querySelectorAll('#copies-gallery .caption-label').length > 0", timeout=60_000)
    shown = set(gallery_captions(page, "copies-gallery"))
    top = served_index(served).search(str(served["photos"] / "scene-005.jpg"), k=12, collapse=True)[0]
    assert shown == {Path(p).name for p in top.copies}
    assert shown | {Path(top.path).name} == {"scene-005.jpg", *MARKDOWN_NAMES}, "the three identical files"

    # Two clicks on the selected result's preview make a region of that image, in its own pixels.
    image = page.locator("#preview img").first
    box = image.bounding_box()
    image.click(position={"x": box["width"] * 0.1, "y": box["height"] * 0.1})
    page.wait_for_function("document.querySelector('#region-note').innerText.includes('first corner')")
    image.click(position={"x": box["width"] * 0.7, "y": box["height"] * 0.8})
    page.wait_for_function("document.querySelector('#region-note').innerText.includes('of the result')")
    page.wait_for_selector("#region-crop img")
    x0, y0, x1, y1 = parse_box(page.input_value("#region-box textarea, #region-box input"))
    assert x1 <= top.width and y1 <= top.height and x1 - x0 > top.width / 3, (x0, y0, x1, y1)
    page.click("#region-search")
    page.wait_for_function("document.querySelector('#search-status').innerText.includes('from region')",
                           timeout=60_000)
    expected = served_index(served).search(top.id, k=12, box=(x0, y0, x1, y1), collapse=True)
    page.wait_for_function(f"document.querySelectorAll('#results-gallery .caption-label').length == {len(expected)}")
    assert caption_names(page, "results-gallery") == [Path(h.path).name for h in expected]
    page.close()


def test_heat_map_overlay_on_a_result_toggles(served, browser):
    page = searched_page(served, browser, "coffee.jpg", at_least=2)
    page.locator("#results-gallery button.thumbnail-item").nth(1).click()
    page.wait_for_function("document.querySelector('#preview img')")
    plain = page.locator("#preview img").get_attribute("src")
    page.locator("#heat-toggle input").check()
    page.wait_for_function("document.querySelector('#heat-note').innerText.includes('Heat map')", timeout=60_000)
    page.wait_for_function(f"document.querySelector('#preview img').src != {plain!r}")
    page.screenshot(path=str(ARTIFACTS / "heat-map.png"), full_page=True)
    page.locator("#heat-toggle input").uncheck()
    page.wait_for_function("!document.querySelector('#heat-note').innerText.includes('Heat map')")
    page.close()


def test_map_tab_click_searches_from_the_image_under_it(served, browser):
    from vitsearch.ui.map_page import map_view
    from vitsearch.ui.map_tab import MAP_HEIGHT, MAP_WIDTH

    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    page.goto(served["url"])
    page.get_by_role("tab", name="Map").click()
    page.click("#draw-map")
    page.wait_for_function("document.querySelector('#map-note textarea, #map-note input').value.includes('images')",
                           timeout=180_000)
    view = map_view(served_index(served))  # the positions the server computed (from its cache)
    positions = view.layout(MAP_WIDTH, MAP_HEIGHT)
    target = next(n for n, p in enumerate(view.points) if p.path.endswith("chelsea.jpg"))
    x, y = positions[target]
    image = page.locator("#map-image img").first
    image.wait_for()
    box = image.bounding_box()
    image.click(position={"x": x * box["width"] / MAP_WIDTH, "y": y * box["height"] / MAP_HEIGHT})
    page.wait_for_function("document.querySelector('#map-clicked textarea, #map-clicked input').value"
                           ".includes('chelsea.jpg')", timeout=60_000)
    page.wait_for_function("document.querySelectorAll('#map-results .caption-label').length > 0")
    assert caption_names(page, "map-results")[0] == "chelsea.jpg"
    page.screenshot(path=str(ARTIFACTS / "map-tab.png"), full_page=True)
    page.close()


def test_cleanup_by_rules_previews_applies_and_undoes(served, browser):
    """Runs last in this module: it moves files and puts them back."""
    photos = served["photos"]
    before = {p.name: p.read_bytes() for p in photos.iterdir() if p.is_file() and not p.is_symlink()}
    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    page.goto(served["url"])
    page.get_by_role("tab", name="Duplicates").click()
    captions = pick_group(page, "scene-000-copy.jpg")
    assert "identical" in captions, "each member says its tier"
    page.wait_for_function("document.querySelector('#dupes-table').innerText.includes('same bytes as the keeper')")
    assert "identical" in page.inner_text("#dupes-summary textarea") or "identical" in page.input_value(
        "#dupes-summary textarea")
    page.click("#cleanup-preview")
    page.wait_for_function("document.querySelector('#cleanup-summary textarea').value.includes('would move')",
                           timeout=60_000)
    preview = page.input_value("#cleanup-summary textarea")
    moving = int(preview.split()[0])
    assert moving >= 2, preview  # scene-000's copy and one of the Markdown-named copies of scene-005
    assert all((photos / name).exists() for name in before), "a preview moves nothing"
    page.screenshot(path=str(ARTIFACTS / "cleanup-preview.png"), full_page=True)
    page.click("#cleanup-apply")
    page.wait_for_function("document.querySelector('#dupes-outcome textarea').value.includes('Moved')",
                           timeout=60_000)
    gone = [name for name in before if not (photos / name).exists()]
    assert len(gone) == moving, page.input_value("#dupes-outcome textarea")
    page.click("#cleanup-undo")
    page.wait_for_function("document.querySelector('#dupes-outcome textarea').value.includes('Restored')",
                           timeout=60_000)
    assert {p.name: p.read_bytes() for p in photos.iterdir() if p.is_file() and not p.is_symlink()} == before
    page.close()

"""The web page and videos, live: a real `vitsearch serve` over photos and a clip, driven in
Debian's chromium by Playwright. A still exported from second 7 finds the clip, shown as the frame
that matched with its moment (the nearest sampled frame: 'trip.mp4 @ 00:06.0'), large when
selected, with its facts; the heat map explains the frame; the kind filter keeps videos or
photos; the video file itself is never served."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.conftest import run_cli, write_scenes
from tests.e2e.test_ui import ARTIFACTS, browser, gallery_captions, searched_page, serving  # noqa: F401 (fixture)
from tests.videos import frame_at, scene_shots, write_clip

STILL = "../queries/still-7s.png"  # beside the photos, not indexed: searched_page takes it from photos/


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui-videos")
    photos = root / "photos"
    write_scenes(photos, range(4))
    clip = write_clip(photos / "trip.mp4", scene_shots([100, 101, 102, 103]))  # 12 s, cuts every 3 s
    (root / "queries").mkdir()
    frame_at(clip, 7.0).save(root / "queries" / "still-7s.png")
    store = root / "store"
    result = run_cli("index", photos, "--store", store, "--weights", "random")
    assert result.returncode == 0, result.stderr
    with serving(store) as (url, _, _):
        yield {"url": url, "photos": photos, "store": store, "clip": clip}


def loaded_width(page, selector: str) -> int:
    """The natural width of the image at `selector` once the browser has loaded it."""
    page.wait_for_function(f"(() => {{ const i = document.querySelector({selector!r});"
                           f" return i && i.complete && i.naturalWidth > 0; }})()", timeout=60_000)
    return page.evaluate(f"document.querySelector({selector!r}).naturalWidth")


def test_a_still_finds_the_video_shown_as_its_frame_at_that_moment(served, browser):  # noqa: F811
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = searched_page(served, browser, STILL, height=1300)
    captions = gallery_captions(page, "results-gallery")
    match = re.fullmatch(r"[\d.]+ · trip\.mp4 @ 00:0(\d\.\d)", captions[0])
    assert match and abs(float(match.group(1)) - 7.0) <= 1.5, captions
    assert not any("@" in c for c in captions[1:]), "photos carry no time"
    assert 0 < loaded_width(page, "#results-gallery button.thumbnail-item img") <= 256
    thumb = page.evaluate("document.querySelector('#results-gallery button.thumbnail-item img').src")
    head = httpx.get(thumb, timeout=10).content[:3]
    assert head == b"\xff\xd8\xff", "the thumbnail is a generated JPEG, not the video"

    page.locator("#results-gallery button.thumbnail-item").first.click()
    page.wait_for_function("document.querySelector('#metadata') && "
                           "document.querySelector('#metadata').innerText.includes('matched at')")
    facts = page.inner_text("#metadata")
    assert '"video"' in facts and "00:12.0 (12.0 s)" in facts and "JPEG quality" not in facts, facts
    assert "15 fps" in facts and "h264" in facts and "kbit/s" in facts, facts
    assert loaded_width(page, "#preview img") == 320, "the frame shown large, at the clip's own size"
    page.wait_for_function("document.querySelector('#heat-note').innerText.includes('the frame that matched')")
    assert re.search(r"trip\.mp4 @ 00:0\d\.\d of 00:12\.0", page.inner_text("#heat-note"))
    page.screenshot(path=str(ARTIFACTS / "video-hit.png"), full_page=True)

    page.click("#preview img", position={"x": 40, "y": 40})  # a region's first corner, on a frame
    page.wait_for_function("document.querySelector('#region-note').innerText.includes('not yet on a video')")
    page.locator("#heat-toggle input").check()  # why similar: explained on the frame that matched
    page.wait_for_function("document.querySelector('#heat-note').innerText.includes('Heat map')", timeout=60_000)
    assert re.search(r"yellow regions of trip\.mp4 @ 00:0\d\.\d match", page.inner_text("#heat-note"))
    assert loaded_width(page, "#preview img") == 320
    page.close()


def test_the_kind_filter_keeps_videos_or_photos_and_the_file_is_never_served(served, browser):  # noqa: F811
    page = searched_page(served, browser, STILL)
    page.get_by_text("Filters").click()
    for choice, clause in (("videos", "kind = 'video'"), ("photos", "kind = 'image'")):
        page.locator("#kind-pick").get_by_role("radio", name=choice, exact=True).check()
        page.click("#search-button")
        page.wait_for_function(f"document.querySelector('#search-status').innerText.includes({clause!r})",
                               timeout=60_000)
        page.wait_for_function("document.querySelectorAll('#results-gallery .caption-label').length >= 1")
        captions = gallery_captions(page, "results-gallery")
        videos = [c for c in captions if "trip.mp4" in c]
        assert (videos == captions) if choice == "videos" else not videos, (choice, captions)
    page.close()
    clip = str(served["clip"])
    with httpx.Client(base_url=served["url"], timeout=10) as http:
        for prefix in ("/gradio_api/file=", "/file="):
            response = http.get(prefix + clip)
            assert response.status_code in (400, 403, 404), (prefix, response.status_code)

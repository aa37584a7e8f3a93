"""The web page and the photographer's records, live: a real `vitsearch serve` over the
photo-records library (tests/photo_records.py), driven in Debian's chromium by Playwright: stars
in a result's metadata and a group's table, the records filters, and a cleanup that marks XMP
sidecars instead of moving files, then undone; the measured quality beside them, sortable."""

from __future__ import annotations

import re

import pytest

from tests.conftest import run_cli
from tests.e2e.test_ui import ARTIFACTS, browser, caption_names, pick_group, searched_page, serving  # noqa: F401 (fixture)
from tests.photo_records import make_library


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("ui-records")
    photos = root / "photos"
    expected = make_library(photos)
    store = root / "store"
    result = run_cli("index", photos, "--store", store, "--weights", "random")
    assert result.returncode == 0, result.stderr
    with serving(store) as (url, _, _):
        yield {"url": url, "photos": photos, "store": store, "expected": expected}


def files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_a_result_shows_its_rating_and_the_records_filter_it(served, browser):  # noqa: F811
    page = searched_page(served, browser, "best.jpg", height=1200)
    assert caption_names(page, "results-gallery")[0] == "best.jpg"
    page.locator("#results-gallery button.thumbnail-item").first.click()
    page.wait_for_function("document.querySelector('#metadata') && "
                           "document.querySelector('#metadata').innerText.includes('★★★★★')")
    shown = page.inner_text("#metadata")
    assert "holiday" in shown and "beach" in shown and "best.jpg.xmp" in shown, shown
    assert re.search(r"JPEG quality\W+92\b", shown) and "higher is sharper" in shown, shown  # Pillow's 92

    page.get_by_text("Filters").click()
    page.locator("#keyword textarea, #keyword input").fill("holiday")
    page.click("#search-button")
    page.wait_for_function("document.querySelector('#search-status').innerText.includes('holiday')",
                           timeout=60_000)
    status = page.inner_text("#search-status")
    assert "list_contains(keywords, 'holiday')" in status, status
    assert set(caption_names(page, "results-gallery")) == {"best.jpg", "pick.jpg"}
    page.close()


def table_rows(page, table_id: str) -> list[dict]:
    """A Gradio table's rows as shown (sorted or not), each as {header: cell text}."""
    headers = page.locator(f"#{table_id} th[role=columnheader]").evaluate_all("hs => hs.map(h => h.title)")
    rows = page.locator(f"#{table_id} [role=row].virtual-row").evaluate_all(
        "rs => rs.map(r => Array.from(r.querySelectorAll('[role=gridcell]')).map(c => c.innerText.trim()))")
    return [dict(zip(headers, row, strict=True)) for row in rows]


def sort_table(page, table_id: str, header: str, direction: str) -> None:
    """Sort by a column as a user does: the header's menu (⋮), then 'Sort ascending' or 'Sort descending'."""
    column = page.locator(f"#{table_id} th[role=columnheader][title='{header}']")
    column.hover()  # the menu button shows on a hovered or selected header
    column.locator(".cell-menu-button").click()
    page.get_by_role("menuitem", name=f"Sort {direction}").click()


def test_duplicates_table_shows_measured_quality_and_sorts_by_it(served, browser):  # noqa: F811
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(served["url"])
    page.get_by_role("tab", name="Duplicates").click()
    pick_group(page, "upscaled_export.jpg")
    page.wait_for_function("document.querySelector('#dupes-table').innerText.includes('upscaled_export.jpg')")
    rows = {row["path"].rsplit("/", 1)[-1]: row for row in table_rows(page, "dupes-table")}
    # best.jpg was written by Pillow at quality 92, its 2x upscale at 80 (tests/photo_records.py)
    assert rows["best.jpg"]["JPEG quality"] == "92" and rows["upscaled_export.jpg"]["JPEG quality"] == "80", rows
    assert rows["upscaled_export.jpg"]["suspected upscale"] == "yes" and rows["best.jpg"]["suspected upscale"] == ""
    assert all(float(row["sharpness"]) > 0 and float(row["clipped %"]) >= 0 for row in rows.values()), rows
    assert "best-quality" in page.inner_text("#cleanup-rules"), "the rules box lists the measured-quality rules"

    for direction, first in (("ascending", "upscaled_export.jpg"), ("descending", "best.jpg")):
        sort_table(page, "dupes-table", "JPEG quality", direction)
        page.wait_for_function(f"document.querySelector('#dupes-table [role=row].virtual-row')"
                               f".innerText.includes({first!r})")
        assert [row["JPEG quality"] for row in table_rows(page, "dupes-table")] == (
            ["80", "92"] if direction == "ascending" else ["92", "80"])
    page.close()


def test_duplicates_tab_marks_sidecars_instead_of_moving_and_undo_puts_them_back(served, browser):  # noqa: F811
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    photos = served["photos"]
    before = files(photos)
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(served["url"])
    page.get_by_role("tab", name="Duplicates").click()
    captions = pick_group(page, "upscaled_export.jpg")
    assert "★ keep · best.jpg (★★★★★)" in captions, captions
    page.wait_for_function("document.querySelector('#dupes-table').innerText.includes('★★★★★')")
    assert "holiday, beach" in page.inner_text("#dupes-table")

    page.click("#cleanup-preview")
    page.wait_for_function("document.querySelector('#cleanup-summary textarea').value.includes('would move')",
                           timeout=60_000)
    assert "rating guard: kept " in page.input_value("#cleanup-summary textarea")
    page.wait_for_function("document.querySelector('#cleanup-plan').innerText.includes('IMG_0003.AAE')")
    plan = page.inner_text("#cleanup-plan")
    assert "best.jpg (★★★★★)" in plan and "rating guard: kept" in plan and "IMG_0003.MOV" in plan, plan
    page.screenshot(path=str(ARTIFACTS / "cleanup-records.png"), full_page=True)

    page.click("#cleanup-mark")
    page.wait_for_function("document.querySelector('#dupes-outcome textarea').value.includes('Marked')",
                           timeout=60_000)
    outcome = page.input_value("#dupes-outcome textarea")
    marked = files(photos)
    assert "image files untouched" in outcome, outcome
    assert "upscaled_export.jpg.xmp" in marked and "IMG_0003.HEIC.xmp" in marked, sorted(marked)
    assert b"duplicate of" in marked["upscaled_export.jpg.xmp"]
    assert marked["pick_big.jpg.xmp"] != before["pick_big.jpg.xmp"], "an existing sidecar is marked in place"
    assert {n: b for n, b in marked.items() if not n.lower().endswith(".xmp")} == {
        n: b for n, b in before.items() if not n.lower().endswith(".xmp")}, "no image (or .mov, .aae) is written"
    assert set(before) <= set(marked), "marking moves nothing"

    page.click("#cleanup-undo")
    page.wait_for_function("document.querySelector('#dupes-outcome textarea').value.includes('Restored')",
                           timeout=60_000)
    assert "sidecar" in page.input_value("#dupes-outcome textarea")
    assert not (photos / "upscaled_export.jpg.xmp").exists()
    assert files(photos) == before, "undo puts every sidecar back byte for byte"
    page.close()

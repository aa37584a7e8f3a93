"""The measured quality facts as the page shows them."""

from __future__ import annotations

from vitsearch.ui.duplicates_tab import MEMBER_COLUMNS, _rules_help
from vitsearch.ui.quality import QUALITY_HEADERS, quality_cells, quality_facts

MEASURED = {"jpeg_quality": 92, "sharpness": 312.456, "exposure": 0.01234}


def test_table_cells_stay_numbers_so_that_columns_sort_as_numbers():
    assert quality_cells(MEASURED) == [92, 312.5, 1.23, ""]
    assert quality_cells(MEASURED, suspected_upscale=True)[-1] == "yes"
    assert quality_cells({"jpeg_quality": None, "sharpness": None, "exposure": None}) == [None, None, None, ""]
    assert quality_cells({}) == [None, None, None, ""]
    kinds = dict(MEMBER_COLUMNS)
    assert [kinds[h] for h in QUALITY_HEADERS] == ["number", "number", "number", "str"]
    assert all(kinds[h] == "number" for h in ("score", "width", "height", "bytes"))


def test_the_metadata_panel_reads_each_fact_in_words():
    assert quality_facts(MEASURED, "JPEG") == {"JPEG quality": "92", "sharpness": "312.5 (higher is sharper)",
                                               "exposure": "1.2% clipped (shadows and highlights)"}
    other = quality_facts({"jpeg_quality": None, "sharpness": 40.0, "exposure": 0.0}, "PNG")
    assert other["JPEG quality"] == "none (PNG is not a JPEG)" and other["exposure"] == "nothing clipped"
    assert quality_facts({"exposure": 0.0002}, "JPEG")["exposure"].startswith("<0.1% clipped")
    assert set(quality_facts({}, "JPEG").values()) == {"not measured"}


def test_the_rules_box_lists_the_measured_quality_rules():
    help_text = _rules_help()
    for rule in ("best-quality", "most-detail", "sharpest", "highest-jpeg-quality", "largest-resolution"):
        assert rule in help_text

"""The filter form: fields become quoted SQL."""

from __future__ import annotations

from vitsearch.ui.filters import build_where


def test_filter_fields_become_quoted_sql():
    where = build_where("/photos/o'neil", "2023-01-01", "2023-12-31", 1024, None, ["JPEG", "EVIL'); --"])
    assert "starts_with(path, '/photos/o''neil')" in where
    assert "TIMESTAMP '2023-12-31 23:59:59'" in where
    assert "width >= 1024" in where and "format IN ('JPEG')" in where
    assert build_where() is None

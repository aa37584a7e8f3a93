"""`where` validation, and the sandbox the expression runs in."""

from __future__ import annotations

import pytest

from vitsearch.indexer.errors import ConfigError
from vitsearch.search.filters import FILTER_COLUMNS, metadata_sql, validate_where


@pytest.mark.parametrize("where", [
    "width >= 1024",
    "name LIKE 'a;b%' AND (height < 10 OR format = 'PNG')",
    "path = 'it''s -- not a comment'",
    "captured_at > TIMESTAMP '2020-01-01' AND folder = '/x/*y*/'",
])
def test_single_expressions_pass(where):
    assert validate_where(where) == where
    assert f"({where})" in metadata_sql(where)


@pytest.mark.parametrize("where, says", [
    ("", "needs a boolean"),
    ("   ", "needs a boolean"),
    ("1=1; DROP TABLE images", "';'"),
    ("width > 1 -- and the rest", "comments"),
    ("width > 1 /* hidden */", "comments"),
    ("(width > 1", "unclosed"),
    ("width > 1)", "unbalanced"),
    ("name = 'open", "unclosed"),
    ("x" * 5000, "longer than"),
])
def test_anything_but_one_expression_is_refused(where, says):
    with pytest.raises(ConfigError, match=says):
        validate_where(where)


def test_every_documented_column_is_in_the_view():
    sql = metadata_sql()
    for column in FILTER_COLUMNS:
        assert column in sql

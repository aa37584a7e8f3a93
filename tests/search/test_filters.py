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


# ---- bounds: what a row filter never needs is refused, what remains runs within limits ----

HEAVY_RECURSION = ("id IN (WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3000000) "
                   "SELECT n FROM r)")


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    from tests.conftest import FakeEncoder
    from tests.search.test_search import write_varied_images
    from vitsearch.indexer import build_index

    root = tmp_path_factory.mktemp("filters")
    write_varied_images(root / "photos", 40)
    build_index([root / "photos"], root / "store", encoder=FakeEncoder())
    return root / "store"


def _settings(store) -> tuple:
    from vitsearch.indexer.store.store import Store

    with Store(store).connect() as con:
        return con.execute("SELECT current_setting('memory_limit'), "
                           "current_setting('max_temp_directory_size')").fetchone()


@pytest.mark.parametrize("where, says", [
    (HEAVY_RECURSION, "subquery"),  # 249 s without its bound in the report, 3 million rows here
    ("id IN (SELECT * FROM range(100000000))", "subquery"),
    ("path IN (FROM read_csv('/etc/passwd'))", "subquery"),
    ("EXISTS (SELECT 1 FROM images)", "subquery"),
    ("path = repeat('a', 2000000000)", r"repeat\(\)"),  # peaked at 5.8 GB: no limit stops one call
    ("length(lpad(path, 2000000000, 'x')) > 1", r"lpad\(\)"),
    ("sleep_ms(100000) IS NULL", r"sleep_ms\(\)"),
    ("current_setting('memory_limit') = 'x'", r"current_setting\(\)"),
    ("len(list_transform(labels, lambda x: x)) > 0", r"list_transform\(\)"),
    ("COLUMNS('w.*') > 3", "star expressions"),
])
def test_what_a_row_filter_never_needs_is_refused_before_it_runs(tiny_store, where, says):
    import time

    from tests.conftest import FakeEncoder
    from vitsearch.search import ImageIndex

    index = ImageIndex.open(tiny_store, encoder=FakeEncoder())
    started = time.monotonic()
    with pytest.raises(ConfigError, match=f"where .*{says}"):
        index.search(1, k=3, where=where)
    assert time.monotonic() - started < 30


def test_a_filter_past_its_time_is_stopped_with_a_clear_error(tiny_store, monkeypatch):
    import time

    from vitsearch.indexer.store.store import Store
    from vitsearch.search import filters

    monkeypatch.setattr(filters, "check_expression", lambda con, where: None)  # the bound, not the check
    monkeypatch.setattr(filters, "FILTER_SECONDS", 0.5)
    endless = "id IN (WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r)"
    before = _settings(tiny_store)
    started = time.monotonic()
    with Store(tiny_store).connect() as con, pytest.raises(ConfigError, match="longer than 0.5 s"):
        filters.matching_ids(con, endless)
    assert time.monotonic() - started < 30
    assert _settings(tiny_store) == before, "the bounds are lifted after the filter"


def test_a_filter_past_its_memory_is_stopped_with_a_clear_error(tiny_store, monkeypatch):
    from vitsearch.indexer.store.store import Store
    from vitsearch.search import filters

    monkeypatch.setattr(filters, "check_expression", lambda con, where: None)
    monkeypatch.setattr(filters, "FILTER_MEMORY", "32MB")
    greedy = "id IN (SELECT count(DISTINCT i) FROM range(20000000) t(i))"  # ~300 MB of hash table
    with Store(tiny_store).connect() as con, pytest.raises(ConfigError, match="more than 32MB"):
        filters.matching_ids(con, greedy)


def test_normal_filters_still_work_and_other_reads_are_unbounded(tiny_store):
    from tests.conftest import FakeEncoder
    from vitsearch.indexer.store.store import Store
    from vitsearch.search import ImageIndex

    index = ImageIndex.open(tiny_store, encoder=FakeEncoder())
    before = _settings(tiny_store)
    where = ("width >= 30 AND lower(name) LIKE 'img-%' AND year(mtime) > 2000 "
             "AND NOT list_contains(coalesce(labels, []), 'x') AND format IN ('PNG', 'JPEG')")
    hits = index.search(1, k=50, where=where)
    wide = {r["id"] for r in Store(tiny_store).records("id, width") if r["width"] >= 30}
    assert {h.id for h in hits} == wide and len(wide) > 5
    assert _settings(tiny_store) == before


def test_every_allowed_function_exists_in_duckdb():
    import duckdb

    from vitsearch.search.filters import ALLOWED_FUNCTIONS

    known = {name for (name,) in duckdb.connect().execute(
        "SELECT function_name FROM duckdb_functions() WHERE function_type IN ('scalar', 'macro')").fetchall()}
    assert not ALLOWED_FUNCTIONS - known - {"!~~~"}  # NOT GLOB: the parser's, bound as NOT ~~~


# ---- the photographer's records as a filter (the page's minimum rating, picked only, keyword) ----

def test_records_filters_become_quoted_sql():
    from vitsearch.search.filters import all_of, records_where

    assert records_where() is None and records_where(keyword="  ") is None
    assert records_where(min_rating=4) == "rating >= 4"
    assert records_where(picked=True) == "pick = 'picked'"
    where = records_where(min_rating=0, picked=True, keyword="o'neil; --")
    assert where == "rating >= 0 AND pick = 'picked' AND list_contains(keywords, 'o''neil; --')"
    assert validate_where(where) == where
    with pytest.raises(ConfigError, match="-1 to 5"):
        records_where(min_rating=6)
    assert all_of("width > 1 OR height > 1", None, "rating >= 3") == "(width > 1 OR height > 1) AND (rating >= 3)"
    assert all_of(None, " ") is None and all_of("width > 1") == "width > 1"


@pytest.fixture(scope="module")
def records_index(tmp_path_factory):
    from tests.conftest import FakeEncoder
    from tests.photo_records import make_library
    from vitsearch.indexer import build_index
    from vitsearch.search import ImageIndex

    root = tmp_path_factory.mktemp("records")
    make_library(root / "photos")
    build_index([root / "photos"], root / "store", encoder=FakeEncoder())
    return ImageIndex.open(root / "store", encoder=FakeEncoder())


@pytest.mark.parametrize("fields, names", [
    ({"min_rating": 4}, {"best.jpg", "alone.jpg"}),  # alone.jpg: its sidecar's 4 over its embedded 2
    ({"min_rating": 5}, {"best.jpg"}),
    ({"picked": True}, {"pick.jpg"}),
    ({"keyword": "holiday"}, {"best.jpg", "pick.jpg"}),
    ({"keyword": "holiday", "min_rating": 1}, {"best.jpg"}),
    ({"keyword": "it's"}, set()),
])
def test_records_filters_select_what_the_photographer_recorded(records_index, fields, names):
    from vitsearch.search.filters import all_of, records_where

    where = all_of("width > 0 OR height > 0", records_where(**fields))
    hits = records_index.search(1, k=50, where=where, collapse=False)
    assert {h.path.rsplit("/", 1)[1] for h in hits} == names

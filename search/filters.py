"""`where` filters: one boolean SQL expression over the images' metadata, evaluated by DuckDB.

The expression sees one table, `images`, with these columns: id, path, root, folder, name, size,
mtime, width, height, format, captured_at, camera, content_hash, indexed_at, labels (the model's top-5
ImageNet classes, best first, e.g. list_contains(labels, 'tabby, tabby cat')), label_probs and label
(the best class), and the photographer's records from XMP: rating (-1..5, NULL when unset), pick
('picked', 'rejected' or NULL), color_label, keywords (e.g. list_contains(keywords, 'holiday')) and
companion_files (the sidecars and edit files that belong to the image), records_note (why some of
its XMP was not read), and the measured quality (docs/quality.md): jpeg_quality, sharpness,
clipped_shadows, clipped_highlights, exposure (their sum), detail and effective_resolution (the
pixels backed by detail, at most the stated ones), and kind ('image' or 'video') with a video's
duration (seconds), fps, codec and bitrate (bits per second). Anything else (a
second statement, a write, a comment that hides the rest of the query, file access) is refused.

A filter is an expression over one row, checked on DuckDB's own parse tree: subqueries (and with
them WITH, recursive CTEs and table functions such as range() or read_csv()), lambdas and
functions outside ALLOWED_FUNCTIONS are refused. What remains runs within FILTER_SECONDS and
FILTER_MEMORY (see indexer.store.connections.bounded), so no filter can hold the machine.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..indexer.errors import ConfigError, first_line
from ..indexer.imaging.quality import DETAIL_EXPONENT, DETAIL_SHARP
from ..indexer.store.connections import bounded
from ..indexer.store.store import LIVE, MTIME

__all__ = ["FILTER_COLUMNS", "ALLOWED_FUNCTIONS", "validate_where", "check_expression", "matching_ids",
           "metadata_sql", "records_where", "all_of"]

FILTER_COLUMNS = ("id", "path", "root", "folder", "name", "size", "mtime", "width", "height",
                  "format", "captured_at", "camera", "content_hash", "indexed_at", "labels", "label_probs", "label",
                  "rating", "pick", "color_label", "keywords", "companion_files", "records_note",
                  "jpeg_quality", "sharpness", "clipped_shadows", "clipped_highlights", "exposure", "detail",
                  "effective_resolution", "kind", "duration", "fps", "codec", "bitrate")
MAX_WHERE_LENGTH = 4000
# Legitimate filters over a 1M-row store took 0.005-0.43 s and ran within 24 MB here (2 cores):
# these leave ample headroom and stop a runaway query long before it holds the machine.
FILTER_SECONDS = float(os.environ.get("VITSEARCH_FILTER_SECONDS", "10"))
FILTER_MEMORY = os.environ.get("VITSEARCH_FILTER_MEMORY", "256MB")

# The parse-tree nodes an expression over one row is made of. Not here: SUBQUERY (and with it
# WITH, recursive CTEs, table functions), LAMBDA, STAR (COLUMNS(*)), PARAMETER, WINDOW.
_NODES = frozenset({"COLUMN_REF", "CONSTANT", "COMPARISON", "CONJUNCTION", "OPERATOR", "FUNCTION", "CAST",
                    "CASE", "BETWEEN", "COLLATE", "TYPE"})
# Scalar functions (operators are functions in the tree) whose result is no bigger than their
# arguments. Refused by omission: generators such as repeat(), lpad(), printf(), range(),
# replace() or list_resize(), which build a value of any size in one call (repeat('a', 2e9)
# held 5.8 GB: neither DuckDB's memory limit nor an interrupt stops a single call), and
# functions that sleep, read settings or variables, or raise.
ALLOWED_FUNCTIONS = frozenset("""
    + - * / // % ^ ** @ || ~~ !~~ ~~* !~~* ~~~ !~~~ ~ ^@ regexp_full_match regexp_matches regexp_extract
    like_escape not_like_escape ilike_escape not_ilike_escape
    lower upper lcase ucase length len strlen char_length character_length octet_length
    starts_with ends_with prefix suffix contains instr strpos position substring substr left right
    trim ltrim rtrim split_part string_split str_split reverse strip_accents nfc_normalize
    levenshtein damerau_levenshtein hamming jaccard jaro_similarity jaro_winkler_similarity
    parse_filename parse_dirname parse_dirpath md5 hash ascii unicode ord
    abs round floor ceil ceiling trunc sign sqrt cbrt ln log log2 log10 exp pow power mod greatest least
    isnan isinf isfinite even
    date_part datepart year month day hour minute second millisecond microsecond dayofweek isodow
    dayofmonth dayofyear week weekofyear weekday yearweek quarter dayname monthname isoyear era
    epoch epoch_ms epoch_us epoch_ns date_trunc datetrunc date_diff datediff date_sub datesub age
    time_bucket last_day make_date make_time make_timestamp strftime strptime try_strptime to_timestamp
    now today current_date current_localtimestamp get_current_timestamp
    get_current_time transaction_timestamp
    to_years to_months to_weeks to_days to_hours to_minutes to_seconds to_milliseconds to_microseconds
    list_contains list_has array_contains array_has list_has_any list_has_all array_has_any
    array_has_all list_position list_indexof array_position array_indexof list_extract list_element
    array_extract element_at list_value array_value list_pack array_length cardinality
    struct_pack struct_extract row nullif if typeof
""".split())

_METADATA = f"""
SELECT id, path, root,
       regexp_replace(path, '/[^/]*$', '') AS folder,
       regexp_extract(path, '[^/]*$') AS name,
       size, {MTIME} AS mtime, width, height, format,
       captured_at, camera, content_hash, indexed_at,
       labels, label_probs, labels[1] AS label,
       rating, pick, color_label, coalesce(keywords, []::VARCHAR[]) AS keywords,
       coalesce(companion_files, []::VARCHAR[]) AS companion_files, records_note,
       jpeg_quality, sharpness, clipped_shadows, clipped_highlights, clipped_shadows + clipped_highlights AS exposure,
       detail, round(width * height * least(1.0, pow(detail / {DETAIL_SHARP}, {DETAIL_EXPONENT})))
         AS effective_resolution,
       kind, duration, fps, codec, bitrate
FROM main.images WHERE {LIVE}
"""


def metadata_sql(where: str | None = None) -> str:
    """A query of ids whose metadata satisfies `where` (validated first)."""
    query = f"WITH images AS ({_METADATA}) SELECT id FROM images"
    if where is not None:
        query += f" WHERE ({validate_where(where)})"
    return query


def records_where(min_rating: int | None = None, picked: bool = False, keyword: str | None = None) -> str | None:
    """The photographer's records as one `where` expression (None: no condition): a rating of at
    least `min_rating` (-1..5; unrated images never pass), picked only, and `keyword` among the
    image's keywords (exactly as written; quoted here, never pasted)."""
    clauses = []
    if min_rating is not None:
        rating = int(min_rating)
        if not -1 <= rating <= 5:
            raise ConfigError(f"a minimum rating is -1 to 5 stars, not {min_rating!r}", parameter="min_rating")
        clauses.append(f"rating >= {rating}")
    if picked:
        clauses.append("pick = 'picked'")
    if keyword is not None and keyword.strip():
        clauses.append(f"list_contains(keywords, {_quoted(keyword.strip())})")
    return " AND ".join(clauses) or None


def all_of(*wheres: str | None) -> str | None:
    """`where` expressions ANDed, each in parentheses so that an OR in one stays inside it; None
    (and blank ones) left out."""
    parts = [w.strip() for w in wheres if w is not None and w.strip()]
    if len(parts) < 2:
        return parts[0] if parts else None
    return " AND ".join(f"({w})" for w in parts)


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def validate_where(where: str) -> str:
    """Return `where` if it can only be one expression; raise ConfigError saying why not."""
    if not isinstance(where, str) or not where.strip():
        raise ConfigError("where needs a boolean SQL expression, e.g. \"width >= 1024\"", parameter="where")
    if len(where) > MAX_WHERE_LENGTH:
        raise ConfigError(f"where is longer than {MAX_WHERE_LENGTH} characters", parameter="where")
    depth = 0
    quote = None
    for i, char in enumerate(where):
        if quote:
            if char == quote:
                quote = None
            continue
        if char in "'\"":
            quote = char
        elif char == ";":
            raise ConfigError("where must be one expression: ';' is not allowed", parameter="where")
        elif where.startswith(("--", "/*"), i):
            raise ConfigError("where must not contain SQL comments", parameter="where")
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise ConfigError("where has an unbalanced ')'", parameter="where")
    if quote or depth:
        raise ConfigError("where has an unclosed quote or parenthesis", parameter="where")
    return where


def check_expression(con, where: str) -> None:
    """Refuse `where` unless DuckDB parses it as one expression over one row made of _NODES and
    ALLOWED_FUNCTIONS (see the module docstring); ConfigError names what was refused."""
    query = f"SELECT id FROM images WHERE ({validate_where(where)})"
    tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [query]).fetchone()[0])
    if tree.get("error"):
        raise ConfigError(f"where is not valid SQL: {tree.get('error_message', 'unparsable')}", parameter="where")
    statements = tree["statements"]
    if len(statements) != 1 or statements[0]["node"].get("type") != "SELECT_NODE":
        raise ConfigError("where must be a single boolean expression", parameter="where")
    _check_nodes(statements[0]["node"]["where_clause"])


def _check_nodes(node) -> None:
    if isinstance(node, list):
        for child in node:
            _check_nodes(child)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("class")
    if kind == "SUBQUERY":
        raise ConfigError("where is an expression over each image's columns: a subquery (SELECT, WITH, "
                          "a table function such as range() or read_csv()) is not allowed", parameter="where")
    if kind is not None and kind not in _NODES:
        raise ConfigError(f"where is an expression over each image's columns: {kind.lower()} "
                          "expressions are not allowed", parameter="where")
    if kind == "FUNCTION" and str(node.get("function_name", "")).lower() not in ALLOWED_FUNCTIONS:
        raise ConfigError(f"where does not allow {node.get('function_name')}(): a filter calls functions "
                          "that compare, match or take apart values (e.g. lower, starts_with, regexp_matches, "
                          "year, list_contains), not ones that build values of any size, sleep or read settings",
                          parameter="where")
    for child in node.values():
        _check_nodes(child)


def matching_ids(con, where: str) -> np.ndarray:
    """Ids of live images matching `where`, evaluated within FILTER_SECONDS and FILTER_MEMORY.
    `con` must be a sandboxed reader (file access off, see indexer.store.connections): Store.connect()
    of a read-only store is one."""
    import duckdb

    check_expression(con, where)
    try:
        with bounded(con, seconds=FILTER_SECONDS, memory=FILTER_MEMORY):
            ids = con.execute(metadata_sql(where)).fetchnumpy()["id"]
    except duckdb.InterruptException as e:
        raise ConfigError(f"where took longer than {FILTER_SECONDS:g} s and was stopped: make it simpler "
                          "(or raise VITSEARCH_FILTER_SECONDS)", parameter="where") from e
    except duckdb.OutOfMemoryException as e:
        raise ConfigError(f"where needed more than {FILTER_MEMORY} of memory and was stopped: make it "
                          "simpler (or raise VITSEARCH_FILTER_MEMORY)", parameter="where") from e
    except duckdb.Error as e:
        raise ConfigError(f"where failed: {first_line(e)} (columns: {', '.join(FILTER_COLUMNS)})",
                          parameter="where") from e
    return np.asarray(ids, dtype=np.int64)

"""`where` filters: one boolean SQL expression over the images' metadata, evaluated by DuckDB.

The expression sees one table, `images`, with these columns: id, path, root, folder, name, size,
mtime, width, height, format, captured_at, camera, content_hash, indexed_at, labels (the model's top-5
ImageNet classes, best first, e.g. list_contains(labels, 'tabby, tabby cat')), label_probs and label
(the best class). Anything else (a
second statement, a write, a comment that hides the rest of the query, file access) is refused.
"""

from __future__ import annotations

import numpy as np

from ..indexer.errors import ConfigError, first_line
from ..indexer.store import LIVE, MTIME

__all__ = ["FILTER_COLUMNS", "validate_where", "matching_ids", "metadata_sql"]

FILTER_COLUMNS = ("id", "path", "root", "folder", "name", "size", "mtime", "width", "height",
                  "format", "captured_at", "camera", "content_hash", "indexed_at", "labels", "label_probs", "label")
MAX_WHERE_LENGTH = 4000

_METADATA = f"""
SELECT id, path, root,
       regexp_replace(path, '/[^/]*$', '') AS folder,
       regexp_extract(path, '[^/]*$') AS name,
       size, {MTIME} AS mtime, width, height, format,
       captured_at, camera, content_hash, indexed_at,
       labels, label_probs, labels[1] AS label
FROM main.images WHERE {LIVE}
"""


def metadata_sql(where: str | None = None) -> str:
    """A query of ids whose metadata satisfies `where` (validated first)."""
    query = f"WITH images AS ({_METADATA}) SELECT id FROM images"
    if where is not None:
        query += f" WHERE ({validate_where(where)})"
    return query


def validate_where(where: str) -> str:
    """Return `where` if it can only be one expression; raise ConfigError saying why not."""
    if not isinstance(where, str) or not where.strip():
        raise ConfigError("--where needs a boolean SQL expression, e.g. \"width >= 1024\"")
    if len(where) > MAX_WHERE_LENGTH:
        raise ConfigError(f"--where is longer than {MAX_WHERE_LENGTH} characters")
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
            raise ConfigError("--where must be one expression: ';' is not allowed")
        elif where.startswith(("--", "/*"), i):
            raise ConfigError("--where must not contain SQL comments")
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise ConfigError("--where has an unbalanced ')'")
    if quote or depth:
        raise ConfigError("--where has an unclosed quote or parenthesis")
    return where


def matching_ids(con, where: str) -> np.ndarray:
    """Ids of live images matching `where`. `con` must be a sandboxed reader (file access off,
    see indexer.connections): Store.connect() of a read-only store is one."""
    import duckdb

    query = metadata_sql(where)
    try:
        statements = con.extract_statements(query)
    except duckdb.Error as e:
        raise ConfigError(f"--where is not valid SQL: {first_line(e)}") from e
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise ConfigError("--where must be a single boolean expression")
    try:
        ids = con.execute(query).fetchnumpy()["id"]
    except duckdb.Error as e:
        raise ConfigError(
            f"--where failed: {first_line(e)} (columns: {', '.join(FILTER_COLUMNS)})"
        ) from e
    return np.asarray(ids, dtype=np.int64)

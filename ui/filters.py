"""Turn the page's filter fields into a `where` expression for the search API, safely quoted."""

from __future__ import annotations

from datetime import datetime

from ..indexer.errors import ConfigError

__all__ = ["build_where", "FORMATS", "KINDS"]

FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF", "HEIF", "JXL", "RAW")
# (what the page says, the `kind` column's value; "": either)
KINDS = (("photos and videos", ""), ("photos", "image"), ("videos", "video"))


def build_where(folder: str = "", date_from: str = "", date_to: str = "", min_width=None,
                min_height=None, formats=(), kind: str | None = None) -> str | None:
    """Folder prefix, capture-or-modified date range, minimum size, formats and kind ("image" or
    "video"; None or "": both), ANDed."""
    clauses = []
    if folder and folder.strip():
        clauses.append(f"starts_with(path, {_literal(folder.strip())})")
    when = "coalesce(captured_at, mtime)"
    if date_from and date_from.strip():
        clauses.append(f"{when} >= TIMESTAMP {_literal(_date(date_from).isoformat(sep=' '))}")
    if date_to and date_to.strip():
        end = _date(date_to).replace(hour=23, minute=59, second=59)
        clauses.append(f"{when} <= TIMESTAMP {_literal(end.isoformat(sep=' '))}")
    if min_width:
        clauses.append(f"width >= {int(min_width)}")
    if min_height:
        clauses.append(f"height >= {int(min_height)}")
    chosen = [f for f in (formats or []) if f in FORMATS]
    if chosen:
        clauses.append(f"format IN ({', '.join(_literal(f) for f in chosen)})")
    if kind:
        if kind not in {value for _, value in KINDS}:
            raise ConfigError(f"kind is 'image' or 'video', not {kind!r}")
        clauses.append(f"kind = {_literal(kind)}")
    return " AND ".join(clauses) or None


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _date(text: str) -> datetime:
    try:
        return datetime.strptime(text.strip(), "%Y-%m-%d")
    except ValueError:
        raise ConfigError(f"dates are written YYYY-MM-DD, not {text!r}") from None

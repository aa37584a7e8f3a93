"""The query grammar of the command line: `id:N` names an indexed image, a folder stands for the
images directly inside it, anything else is an image file."""

from __future__ import annotations

import os
from collections.abc import Iterable

from ..indexer.errors import ConfigError
from ..indexer.imaging.formats import has_image_extension

__all__ = ["parse_query", "expand_queries"]


def parse_query(text: str) -> int | str:
    """`id:42` -> 42 (an indexed image's id); anything else stays a path."""
    if text.startswith("id:"):
        try:
            return int(text[3:])
        except ValueError:
            raise ConfigError(f"not an id: {text!r} (write id:42)") from None
    return text


def expand_queries(queries: Iterable[str]) -> list[str]:
    """Each folder replaced by the names directly inside it with an extension the scanner picks up
    (formats.has_image_extension), in name order; other queries as they are."""
    expanded = []
    for query in queries:
        if os.path.isdir(query):
            names = sorted(n for n in os.listdir(query) if has_image_extension(n))
            expanded.extend(os.path.join(query, n) for n in names)
        else:
            expanded.append(query)
    return expanded

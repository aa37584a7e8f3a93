"""The photographer's records of indexed images (XMP rating, pick, colour label, keywords, and the
files that belong to each), read by id for display: the Duplicates tab's table of a group."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .index import ImageIndex

__all__ = ["photo_records"]

_COLUMNS = ("rating, pick, color_label, coalesce(keywords, []::VARCHAR[]) AS keywords, "
            "coalesce(companion_files, []::VARCHAR[]) AS companion_files")


def photo_records(index: ImageIndex, ids) -> dict[int, dict]:
    """id -> {"rating", "pick", "color_label", "keywords", "companion_files"} of these live images
    (None and [] where nothing is recorded)."""
    rows = index.store.records_by_id(_COLUMNS, ids)
    return {i: {k: v for k, v in row.items() if k != "id"} for i, row in rows.items()}

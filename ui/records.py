"""The photographer's records as the page shows them: a rating as stars, a member's standing in
one line. Plain text only (the page shows it in textboxes, tables and JSON, never as HTML)."""

from __future__ import annotations

__all__ = ["stars", "standing"]


def stars(rating) -> str:
    """'★★★☆☆' for 3, 'rejected' for XMP's -1, '' when unrated (None, or XMP's 0)."""
    if rating is None or int(rating) == 0:
        return ""
    rating = int(rating)
    if rating < 0:
        return "rejected"
    return "★" * min(rating, 5) + "☆" * max(5 - rating, 0)


def standing(member: dict) -> str:
    """' (★★★★★, picked)': a member's rating and pick flag after its path, '' when neither is said."""
    said = [s for s in (stars(member.get("rating")), member.get("pick") or "") if s]
    said = list(dict.fromkeys(said))  # a reject is said once, whether by rating or by flag
    return f" ({', '.join(said)})" if said else ""

"""How copies of one picture rank by measured quality (indexer.imaging.quality): the one order
that the `best-quality` rule, the suggested keeper and the `suspected_upscale` flag share.

best-quality keeps, in turn: the least clipped (within CLIP_MARGIN), the best JPEG quality class
(a re-save below 80 ranks lower: 60-79, 40-59, below 40), then the most effective pixels (stated
pixels weighted by the detail they hold, within DETAIL_MARGIN), so that the original wins over a
2x or 1.5x upscale, a blur, a crop, a half-size copy, an over-exposed copy and a low-quality
re-save (docs/quality.md)."""

from __future__ import annotations

from ..indexer.imaging.quality import effective_pixels

__all__ = ["QUALITY_COLUMNS", "best_by_quality", "suspected_upscale", "quality_reason"]

# The facts each ranked row needs, as SQL over the images table.
QUALITY_COLUMNS = ("coalesce(width * height, 0) AS pixels, jpeg_quality, detail, "
                   "coalesce(clipped_shadows + clipped_highlights, 0) AS clipped")
CLIP_MARGIN = 0.02  # clipping differences below 2% of the pixels are noise between copies
DETAIL_MARGIN = 1.12  # effective pixels this close are the same picture quality (measurement noise, a rotation)
UPSCALE_PIXELS = 1.2  # an upscale has at least this many times the pixels of a copy ...
UPSCALE_DETAIL = 0.8  # ... and at most this share of its detail


def best_by_quality(facts: dict[int, dict], *, detail_only: bool = False) -> list[int]:
    """The ids whose quality is the best, within DETAIL_MARGIN of the most effective pixels (the
    next rule, or the suggestion's next criterion, chooses among them)."""
    if not detail_only:
        least = min(f["clipped"] for f in facts.values())
        facts = {i: f for i, f in facts.items() if f["clipped"] <= least + CLIP_MARGIN}
        top = max(_jpeg_class(f["jpeg_quality"]) for f in facts.values())
        facts = {i: f for i, f in facts.items() if _jpeg_class(f["jpeg_quality"]) == top}
    most = max(effective_pixels(f["pixels"], f["detail"]) for f in facts.values())
    return [i for i, f in facts.items() if effective_pixels(f["pixels"], f["detail"]) * DETAIL_MARGIN >= most]


def suspected_upscale(fact: dict, others: list[dict]) -> bool:
    """More pixels than another copy of the picture, and clearly less detail in them."""
    if fact["detail"] is None:
        return False
    return any(o["detail"] is not None and fact["pixels"] >= UPSCALE_PIXELS * o["pixels"]
               and fact["detail"] <= UPSCALE_DETAIL * o["detail"] for o in others)


def quality_reason(kept: dict, other: dict) -> str:
    """Why best-quality kept `kept` over `other`, in words: the fact that decided."""
    if other["clipped"] > kept["clipped"] + CLIP_MARGIN:
        return f"kept: {100 * other['clipped']:.0f}% of the other copy is clipped to black or white"
    if _jpeg_class(kept["jpeg_quality"]) != _jpeg_class(other["jpeg_quality"]):
        return f"kept: the other copy is a JPEG re-saved at quality {other['jpeg_quality']}"
    mine, theirs = effective_pixels(kept["pixels"], kept["detail"]), effective_pixels(other["pixels"], other["detail"])
    ratio = mine / theirs if theirs else float("inf")
    if other["pixels"] > kept["pixels"]:
        upscaled = ", which is upscaled" if suspected_upscale(other, [kept]) else ""
        return f"kept: {ratio:.1f}x more detail than the larger copy{upscaled}"
    return f"kept: {ratio:.1f}x more detail than the other copy"


def _jpeg_class(quality: int | None) -> int:
    if quality is None or quality >= 80:
        return 3
    return 2 if quality >= 60 else 1 if quality >= 40 else 0

"""The measured quality facts (docs/quality.md) as the page shows them: readable text in a
result's metadata panel, plain numbers in tables so that a column sorts as numbers."""

from __future__ import annotations

__all__ = ["QUALITY_HEADERS", "quality_cells", "quality_facts"]

QUALITY_HEADERS = ("JPEG quality", "sharpness", "clipped %", "suspected upscale")


def quality_cells(row: dict, suspected_upscale: bool = False) -> list:
    """A table's cells for a describe() row: JPEG quality (int), sharpness (1 decimal), clipped
    shadows and highlights in percent (2 decimals), and 'yes' for a suspected upscale. None
    where not measured (or, for the JPEG quality, not a JPEG): the cell stays empty."""
    return [_whole(row.get("jpeg_quality")), _rounded(row.get("sharpness"), 1),
            _rounded(_percent(row.get("exposure")), 2), "yes" if suspected_upscale else ""]


def quality_facts(row: dict, image_format: str | None = None) -> dict:
    """The metadata panel's lines: {'JPEG quality': '92', 'sharpness': '312.5 (higher is
    sharper)', 'exposure': '1.2% clipped'}; a fact not measured says so, and a file of another
    format (when `image_format` is given) says it has no JPEG quality."""
    quality, sharpness, clipped = (row.get(k) for k in ("jpeg_quality", "sharpness", "exposure"))
    if quality is not None:
        jpeg = str(int(quality))
    elif image_format is not None and image_format.upper() not in ("JPEG", "MPO"):
        jpeg = f"none ({image_format} is not a JPEG)"
    else:
        jpeg = "not measured"
    return {
        "JPEG quality": jpeg,
        "sharpness": f"{sharpness:.1f} (higher is sharper)" if sharpness is not None else "not measured",
        "exposure": _clipped_text(clipped),
    }


def _clipped_text(fraction) -> str:
    if fraction is None:
        return "not measured"
    percent = 100 * float(fraction)
    if percent == 0:
        return "nothing clipped"
    shown = "<0.1" if percent < 0.1 else f"{percent:.1f}"
    return f"{shown}% clipped (shadows and highlights)"


def _percent(fraction):
    return None if fraction is None else 100 * float(fraction)


def _whole(value):
    return None if value is None else int(value)


def _rounded(value, digits: int):
    return None if value is None else round(float(value), digits)

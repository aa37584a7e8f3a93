"""Text from file names and EXIF, made safe to print: a hostile name cannot forge output lines."""

from __future__ import annotations

__all__ = ["shown"]


def shown(text: str) -> str:
    """Control characters escaped, so a hostile file name cannot forge output lines."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)

"""Argument types and flags that several subcommands share (argparse only: `--help` stays instant)."""

from __future__ import annotations

import argparse

__all__ = ["store_flag", "size", "positive_int", "positive_float", "score", "port"]


def store_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", metavar="DIR",
                        help="store directory (default: $VITSEARCH_STORE, else data/store in a source "
                             "checkout, else the user's data folder, ~/.local/share/vitsearch/store on Linux)")


def size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    try:
        if text[-1:].upper() in units:
            return int(float(text[:-1]) * units[text[-1].upper()])
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 512M, 2G)") from None


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


positive_int.__name__ = "_positive_int"  # argparse says "invalid _positive_int value: 'x'": kept as it was


def _number(text: str, kind=float, what: str = "a number"):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None


def positive_float(text: str) -> float:
    value = _number(text)
    if not 0 < value < float("inf"):  # also false for nan
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def score(text: str) -> float:
    """A cosine similarity: a number from -1 to 1 (nan and inf are refused)."""
    value = _number(text)
    if not -1.0 <= value <= 1.0:  # also false for nan
        raise argparse.ArgumentTypeError(f"a similarity is between -1 and 1, not {text}")
    return value


def port(text: str) -> int:
    value = _number(text, int, "a port number")
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is between 1 and 65535, not {value}")
    return value

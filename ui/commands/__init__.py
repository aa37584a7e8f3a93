"""The `vitsearch` command's subcommands, one module each with `add_parser(subparsers)` and
`run(args)`; listed in the order `--help` shows them."""

from __future__ import annotations

__all__ = ["COMMANDS"]

COMMANDS = ("index", "info", "export", "search", "explain", "map", "outliers", "dupes", "reindex", "serve", "demo")

"""`vitsearch info`: what a store holds, and with --failures the files that failed."""

from __future__ import annotations

import json
import sys

from ..text import shown
from .arguments import store_flag

__all__ = ["add_parser", "run"]


def add_parser(commands) -> None:
    info = commands.add_parser("info", help="what a store holds")
    store_flag(info)
    info.add_argument("--json", action="store_true")
    info.add_argument("--failures", action="store_true", help="list failed files with their reasons")
    info.set_defaults(handler=run)


def run(args) -> int:
    from ...search import list_failures, store_info

    info = store_info(args.store)
    if args.json:
        print(json.dumps(info, default=str))
    else:
        for key, value in info.items():
            print(f"{key:>12}: {value}")
    if args.failures:
        for path, reason, detail in list_failures(args.store):
            print(f"{reason}\t{shown(path)}\t{shown(detail or '')}", file=sys.stdout if not args.json else sys.stderr)
    return 0

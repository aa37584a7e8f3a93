"""`vitsearch demo`: index generated sample images and search them (see ui/demo.py)."""

from __future__ import annotations

from .arguments import store_flag

__all__ = ["add_parser", "run"]


def add_parser(commands) -> None:
    demo = commands.add_parser("demo", help="index generated sample images under data/ and search them")
    store_flag(demo)
    demo.set_defaults(handler=run)


def run(args) -> int:
    from ..demo import run_demo

    return run_demo(args.store)

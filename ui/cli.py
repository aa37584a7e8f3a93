"""The `vitsearch` command: the parser, assembled from ui/commands/ (one module per subcommand),
and the one place library errors become `Error: ...` and an exit code. Heavy imports stay lazy."""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys

from .text import shown

__all__ = ["main", "run", "build_parser", "in_flags", "shown"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv` (default: sys.argv[1:]) in this process; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    from ..indexer.errors import VitsearchError

    try:
        return args.handler(args) or EXIT_OK
    except VitsearchError as e:
        print(f"Error: {in_flags(e, parser)}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # the reader went away (`| head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush there
        return EXIT_OK
    except OSError as e:  # disk full, permissions: the system's own words, without a traceback
        where = f" ({e.filename})" if e.filename else ""
        print(f"Error: {e.strerror or e}{where}. Nothing committed was lost; fix this and run the "
              "same command again.", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("Interrupted: committed batches are kept; run the same command again to resume.", file=sys.stderr)
        return 130


def in_flags(error: Exception, parser: argparse.ArgumentParser) -> str:
    """The library's message with the argument it names said as its flag: `where must be ...`
    becomes `--where must be ...`, `precision='fp8' is ...` becomes `--precision fp8 is ...`."""
    text, parameter = str(error), getattr(error, "parameter", None)
    flag = _flags(parser).get(parameter) if parameter else None
    if not flag or not text.startswith(parameter):
        return text
    rest = text[len(parameter):]
    value = re.match(r"""=(?:'([^']*)'|"([^"]*)"|(\S+))""", rest)
    if value:
        rest = " " + next(v for v in value.groups() if v is not None) + rest[value.end():]
    return flag + rest


def _flags(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each option's destination -> its long flag, over every subcommand."""
    flags = {}
    parsers = [parser] + [p for a in parser._actions if isinstance(a, argparse._SubParsersAction)
                          for p in a.choices.values()]
    for each in parsers:
        for action in each._actions:
            long = [o for o in action.option_strings if o.startswith("--")]
            if long:
                flags.setdefault(action.dest, long[0])
    return flags


def run() -> None:
    """The `vitsearch` command's entry: main(), then the process ends without interpreter teardown."""
    from .process_exit import exit_process

    exit_process(main())


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: each subcommand's module adds its parser, whose `handler` runs it."""
    from .commands import COMMANDS

    parser = argparse.ArgumentParser(
        prog="vitsearch", description="Local image-similarity search over your folders."
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.commands.{name}").add_parser(commands)
    return parser


if __name__ == "__main__":
    run()

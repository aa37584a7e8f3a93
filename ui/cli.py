"""The `vitsearch` command: the parser, assembled from ui/commands/ (one module per subcommand),
and the one place library errors become `Error: ...` and an exit code. Heavy imports stay lazy."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .text import shown

__all__ = ["main", "run", "build_parser", "shown"]

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
        print(f"Error: {e}", file=sys.stderr)
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

"""`vitsearch serve`: the web page (search by image, review duplicates) over a store."""

from __future__ import annotations

from .arguments import port, store_flag

__all__ = ["add_parser", "run"]


def add_parser(commands) -> None:
    serve = commands.add_parser("serve", help="the web page: search by image, review duplicates")
    store_flag(serve)
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=port, default=7860)
    serve.add_argument("--auth", metavar="USER:PASS", help="require this login (needed off loopback)")
    serve.add_argument("--insecure-no-auth", action="store_true",
                       help="allow a non-loopback --host without --auth")
    serve.add_argument("--api-token-file", metavar="FILE",
                       help="require `Authorization: Bearer TOKEN` (the file's first line) on every /api/v1 route "
                            "(else the VITSEARCH_API_TOKEN variable, if set)")
    serve.add_argument("--read-only", action="store_true",
                       help="refuse cleanups (apply, undo, mark) and decisions, on the page and through the API")
    serve.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                       help="let web pages from this origin call /api/v1 (repeatable; none by default)")
    serve.set_defaults(handler=run)


def run(args) -> int:
    from ..serve import serve

    serve(args.store, host=args.host, port=args.port, auth=args.auth, insecure_no_auth=args.insecure_no_auth,
          api_token_file=args.api_token_file, read_only=args.read_only, cors_origins=tuple(args.cors_origin))
    return 0

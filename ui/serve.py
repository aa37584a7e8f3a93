"""`vitsearch serve`: launch the page safely (loopback by default, no share link, no originals)."""

from __future__ import annotations

import atexit
import ipaddress
import os
import shutil
import signal
import sys
import tempfile
import threading

from ..indexer.errors import ConfigError
from ..indexer.imaging.images import ALLOWED_FORMATS

__all__ = ["serve", "is_loopback", "MAX_UPLOAD"]

MAX_UPLOAD = "25mb"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(store=None, *, host: str = "127.0.0.1", port: int = 7860, auth: str | None = None,
          insecure_no_auth: bool = False, block: bool = True, api_token_file: str | None = None,
          read_only: bool = False, cors_origins: tuple[str, ...] = ()):
    """Start the page and the JSON API (/api/v1) on one port; returns the running Blocks when
    block=False (tests). The API takes the page's login, or a bearer token (`api_token_file`, else
    VITSEARCH_API_TOKEN); `read_only` refuses cleanups and decisions on both."""
    if not is_loopback(host) and not auth and not insecure_no_auth:
        raise ConfigError(
            f"--host {host} exposes your images beyond this machine: add --auth USER:PASS "
            "(or --insecure-no-auth if you really mean it)"
        )
    credentials = _parse_auth(auth) if auth else None
    from .api import API_PREFIX, ApiAccess, api_ahead_lifespan, build_api, read_token

    access = ApiAccess(token=read_token(api_token_file), login=credentials, writes=not read_only,
                       cors_origins=tuple(cors_origins))
    private_temp = tempfile.mkdtemp(prefix="vitsearch-ui-")
    atexit.register(shutil.rmtree, private_temp, ignore_errors=True)
    if block and threading.current_thread() is threading.main_thread():
        # `kill` (SIGTERM) ends the server like Ctrl-C does, so the atexit clean-up runs.
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    # Before gradio is imported: its uploads and generated files live in our private folder.
    os.environ["GRADIO_TEMP_DIR"] = private_temp
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    _restrict_pillow()

    from starlette.middleware import Middleware
    from starlette.routing import Mount

    from ..search import ImageIndex
    from .app import build_app
    from .limits import BodyLimit, bound_log_lines

    index = ImageIndex.open(store)
    roots = index.roots()
    app = build_app(index, writable=not read_only)
    api = build_api(index, access)
    app.queue(default_concurrency_limit=4)
    bound_log_lines()
    try:
        app.launch(
            server_name=host, server_port=port, auth=credentials, share=False,
            max_file_size=MAX_UPLOAD, allowed_paths=[],
            blocked_paths=[str(index.store.dir), *roots],
            enable_monitoring=False, show_error=True, ssr_mode=False, mcp_server=False, pwa=False,
            prevent_thread_lock=True, quiet=True,
            app_kwargs={"middleware": [Middleware(BodyLimit)], "routes": [Mount(API_PREFIX, app=api)],
                        "lifespan": api_ahead_lifespan(API_PREFIX)},
        )
    except OSError as e:
        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror or 'port in use'}): "
                          "choose another with --port, or stop what is using it") from None
    url = f"http://{_url_host(host)}:{app.server_port}"
    print(f"vitsearch is serving {index.store.dir} at {url}/ (JSON API: {url}{API_PREFIX}/, "
          f"{'read-only' if read_only else 'cleanups allowed'}"
          f"{', bearer token required' if access.token else ''})", file=sys.stderr)
    if block:
        app.block_thread()
    return app


def _exit_on_sigterm(signum, frame) -> None:
    sys.exit(128 + signum)


def _parse_auth(auth: str) -> tuple[str, str]:
    user, sep, password = auth.partition(":")
    if not sep or not user or not password:
        raise ConfigError("--auth takes USER:PASS")
    return user, password


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _restrict_pillow() -> None:
    """In the server process no library may decode outside our allow-list (uploads included):
    EPS and friends could otherwise reach external programs."""
    from PIL import Image

    Image.init()
    for name in list(Image.OPEN):
        if name not in ALLOWED_FORMATS:
            Image.OPEN.pop(name, None)
            if name in Image.ID:
                Image.ID.remove(name)

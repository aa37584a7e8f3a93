"""Bounds on what one request may send and what one log line may hold.

Gradio bounds uploads (`max_file_size`), not the JSON bodies of its other routes: a client
could post tens of MB to `queue/join`, which is parsed in memory and echoed into the log.
"""

from __future__ import annotations

import json
import logging

__all__ = ["BodyLimit", "bound_log_lines", "oversized_query", "MAX_BODY_BYTES", "MAX_UPLOAD_BODY_BYTES",
           "MAX_LOG_LINE", "UPLOAD_MAX_PIXELS"]

MAX_BODY_BYTES = 1 << 20  # JSON calls carry settings and file references, never pixels
MAX_UPLOAD_BODY_BYTES = 26 << 20  # the 25 MB upload limit plus multipart framing
MAX_LOG_LINE = 2000
API_ROUTES = "/api/"  # the JSON API (ui.api) answers a refusal in JSON
UPLOAD_ROUTES = frozenset({"/api/v1/search"})  # besides Gradio's /upload: the API's image upload
# A query needs no more than a few megapixels. Formats that cannot be decoded at reduced size
# (PNG, TIFF, WebP, ...) are refused above this, so four concurrent uploads stay within ~1 GB.
UPLOAD_MAX_PIXELS = 40_000_000
DRAFT_FORMATS = ("JPEG", "MPO")  # decoded at a fraction of their size, whatever they declare


def oversized_query(info) -> str | None:
    """Why an uploaded query image, by its header (`inspect_image(...).info`), would decode too
    big for a query, else None. The page and the API both refuse it before any pixel is decoded."""
    if info.width * info.height <= UPLOAD_MAX_PIXELS or info.format in DRAFT_FORMATS:
        return None
    return (f"this {info.format} is {info.width}x{info.height} pixels; a query image "
            f"may have at most {UPLOAD_MAX_PIXELS // 1_000_000} MP")


class BodyLimit:
    """ASGI middleware: 413 for a body over its route's limit, whether declared up front
    (Content-Length) or streamed (counted as it arrives, never buffered)."""

    def __init__(self, app, max_body: int = MAX_BODY_BYTES, max_upload: int = MAX_UPLOAD_BODY_BYTES):
        self.app, self.max_body, self.max_upload = app, max_body, max_upload

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"].rstrip("/")
        limit = self.max_upload if path.endswith("/upload") or path in UPLOAD_ROUTES else self.max_body
        as_json = path.startswith(API_ROUTES)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            return await _refuse(send, limit, as_json)
        seen = 0
        responded = False

        async def counted_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return message

        async def tracked_send(message):
            nonlocal responded
            responded = responded or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge:
            if not responded:
                await _refuse(send, limit, as_json)


class _TooLarge(Exception):
    pass


async def _refuse(send, limit: int, as_json: bool = False) -> None:
    message = f"request body larger than {limit // (1 << 20)} MB"
    body = json.dumps({"code": "too_large", "message": message}).encode() if as_json else message.encode()
    kind = b"application/json" if as_json else b"text/plain"
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", kind), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class _ShortLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if len(message) > MAX_LOG_LINE:
            record.msg = message[:MAX_LOG_LINE] + f" … [{len(message) - MAX_LOG_LINE} more characters cut]"
            record.args = None
        return True


def bound_log_lines() -> None:
    """Cut over-long log messages of the server's loggers (a hostile request could fill them)."""
    for name in ("", "uvicorn", "uvicorn.error", "uvicorn.access", "gradio", "fastapi"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _ShortLines) for f in logger.filters):
            logger.addFilter(_ShortLines())

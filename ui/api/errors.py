"""The API's errors: JSON with a stable `code` and a `message`, under a status that means what it says."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ...indexer.errors import ConfigError, ImageLoadError, StoreInUseError, StoreMismatchError, VitsearchError
from ..text import shown

__all__ = ["ApiError", "install_error_handlers", "error_response", "AnswerInternalErrors", "CODES"]

log = logging.getLogger("vitsearch.api")

# The codes a client may rely on, with their status.
CODES = {
    "bad_request": 400, "invalid_request": 400, "unauthorized": 401, "writes_disabled": 403, "not_found": 404,
    "unknown_id": 404, "unknown_path": 404, "unknown_plan": 404, "method_not_allowed": 405, "store_busy": 409,
    "plan_stale": 409, "too_large": 413, "unreadable_image": 422, "store_unusable": 503, "internal": 500,
}


class ApiError(Exception):
    """An error the API answers with `code` (one of CODES) and `message`."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


def error_response(code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=CODES[code], headers=headers)


def install_error_handlers(api: FastAPI) -> None:
    api.add_exception_handler(ApiError, _api_error)
    api.add_exception_handler(RequestValidationError, _invalid)
    api.add_exception_handler(HTTPException, _http)
    api.add_exception_handler(VitsearchError, _vitsearch)
    api.add_middleware(AnswerInternalErrors)  # the first added: innermost, inside access and CORS


async def _api_error(request: Request, error: ApiError) -> JSONResponse:
    return error_response(error.code, error.message)


async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'body'}: {e.get('msg')}"
                         for e in error.errors()[:5])
    return error_response("invalid_request", shown(problems)[:500])


async def _http(request: Request, error: HTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "bad_request")
    return error_response(code, str(error.detail))


async def _vitsearch(request: Request, error: VitsearchError) -> JSONResponse:
    """The library's errors by kind: the user's input (400), an image that cannot be read (422),
    a store another process holds (409), a store this server cannot use (503)."""
    message = shown(str(error))[:1000]
    if isinstance(error, StoreInUseError):
        return error_response("store_busy", message)
    if isinstance(error, ImageLoadError) or isinstance(error.__cause__, ImageLoadError):
        return error_response("unreadable_image", message)
    if isinstance(error, StoreMismatchError) or not isinstance(error, ConfigError):
        return error_response("store_unusable", message)
    return error_response("bad_request", message)


class AnswerInternalErrors:
    """ASGI middleware: an unexpected error is logged and answered 500 `internal` here, inside the
    API. Starlette's catch-all handler would answer and then re-raise it into the page's server,
    which drops the connection (and the client's next request on it).

    An error raised by `receive` belongs to the server around the API (the body limit answers it
    413) and goes out in place of whatever the route answers next: FastAPI turns any error
    reading a body into its own 400."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, from_receive = False, None

        async def watched_receive():
            nonlocal from_receive
            try:
                return await receive()
            except Exception as e:
                from_receive = e
                raise

        async def watched_send(message):
            nonlocal started
            if from_receive is not None and not started:
                raise from_receive
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, watched_receive, watched_send)
        except Exception as error:
            if error is from_receive or started:
                raise
            log.exception("internal error answering %s %s", scope.get("method"), shown(scope.get("path", "")))
            response = error_response("internal", f"internal error ({type(error).__name__}); "
                                                  "the server log has the details")
            await response(scope, receive, send)

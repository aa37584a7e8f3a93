"""Who may call the API: the page's rules (loopback open, any other interface only with a login),
plus a bearer token for programs, compared in constant time. With a token set, every route under
/api/v1 needs it, the schema included; with only the page's login, HTTP Basic with that login."""

from __future__ import annotations

import base64
import hmac
import os
from dataclasses import dataclass, field
from pathlib import Path

from ...indexer.errors import ConfigError
from .errors import error_response

__all__ = ["ApiAccess", "read_token", "RequireCredentials", "TOKEN_ENV"]

TOKEN_ENV = "VITSEARCH_API_TOKEN"
MIN_TOKEN_BYTES = 16


@dataclass(frozen=True)
class ApiAccess:
    token: bytes | None = None  # Authorization: Bearer TOKEN
    login: tuple[str, str] | None = None  # the page's --auth USER:PASS, as HTTP Basic
    writes: bool = True  # the cleanup verbs (apply, undo, decisions), as the page's buttons
    cors_origins: tuple[str, ...] = field(default=())  # none: no CORS headers at all

    @property
    def open(self) -> bool:
        return self.token is None and self.login is None


def read_token(path: str | os.PathLike | None) -> bytes | None:
    """The token from `path` (its first line), else from VITSEARCH_API_TOKEN; None when neither."""
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8").strip().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read the API token file {path}: {e}", parameter="api_token_file") from None
        token = text[0].strip() if text else ""
    else:
        token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            return None
    if len(token.encode()) < MIN_TOKEN_BYTES:
        raise ConfigError(f"the API token must be at least {MIN_TOKEN_BYTES} characters "
                          "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')",
                          parameter="api_token_file")
    return token.encode()


class RequireCredentials:
    """ASGI middleware of the API app: 401 (JSON) for a request without the token or login."""

    def __init__(self, app, access: ApiAccess):
        self.app, self.access = app, access

    async def __call__(self, scope, receive, send):
        preflight = scope.get("method") == "OPTIONS" and bool(self.access.cors_origins)  # browsers send none
        if scope["type"] != "http" or self.access.open or preflight:
            return await self.app(scope, receive, send)
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        if self._allowed(header):
            return await self.app(scope, receive, send)
        scheme = "Bearer" if self.access.token is not None else 'Basic realm="vitsearch"'
        message = ("this API needs its token: Authorization: Bearer TOKEN" if self.access.token is not None
                   else "this API needs the server's login (HTTP Basic)")
        response = error_response("unauthorized", message, headers={"WWW-Authenticate": scheme})
        await response(scope, receive, send)

    def _allowed(self, header: bytes) -> bool:
        scheme, _, value = header.partition(b" ")
        value = value.strip()
        if self.access.token is not None:  # then the token alone opens every route
            return scheme.lower() == b"bearer" and hmac.compare_digest(value, self.access.token)
        if scheme.lower() == b"basic":
            try:
                user, _, password = base64.b64decode(value, validate=True).partition(b":")
            except ValueError:
                return False
            wanted_user, wanted_password = (s.encode() for s in self.access.login)
            same_user = hmac.compare_digest(user, wanted_user)
            return hmac.compare_digest(password, wanted_password) and same_user
        return False

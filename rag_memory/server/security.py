"""What stands between the network and the memory: the API key, the bind address, the body size.

- The key is a bearer token compared with `hmac.compare_digest`, whose time does not depend on
  how many leading characters match, so response times do not reveal the key byte by byte.
- A server that listens beyond loopback without a key would hand the memory to anyone who can
  reach the port; `check_bind` refuses it before anything is opened.
- The body limit is enforced while the body arrives, not after: a declared Content-Length over
  it is refused at once, and a chunked body is cut off at the first byte past it, so a client
  cannot make the server buffer more than the limit.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import stat
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from ..errors import InvalidInputError

logger = logging.getLogger(__name__)

# 16 MiB: a full batch (MAX_BATCH vectors of 1024 floats as JSON text) fits with room to spare.
DEFAULT_MAX_BODY_BYTES = 16 << 20

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def load_api_key(path: str | Path) -> str:
    """The key in the file at `path` (surrounding whitespace dropped; one line). The server
    reads it at start, from the operator's command line, never from a request."""
    file = Path(path)
    try:
        key = file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read the API key file {file}: {exc}") from None
    if not key or any(c.isspace() for c in key):
        raise InvalidInputError(
            f"the API key file {file} must hold one key: a non-empty line without spaces"
        )
    if file.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning("the API key file %s is readable by other users (chmod 600 it)", file)
    return key


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine ("localhost" included; any
    other name could resolve to a public address, so it counts as not loopback)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond loopback without an API key."""
    if api_key is None and not is_loopback(host):
        raise InvalidInputError(
            f"refusing to listen on {host} without an API key: anyone who can reach it could "
            "read and change the memory; pass --api-key-file FILE, or bind to 127.0.0.1"
        )


def key_matches(authorization: str | None, api_key: str) -> bool:
    """Whether an `Authorization` header carries `Bearer <api_key>`, compared in constant
    time (bytes, so a non-ASCII header cannot raise)."""
    if authorization is None:
        return False
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode(), api_key.encode())


class BodyTooLarge(HTTPException):
    """A request body passed the server's limit: 413. An HTTPException, so that FastAPI lets it
    through when it is raised while a route reads the body (any other exception there becomes
    FastAPI's 400 "error parsing the body")."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"the request body is larger than this server's limit of {limit:,} bytes"
        )


class BodyLimit:
    """ASGI middleware: a request whose body passes `max_bytes` ends in 413, at once when its
    Content-Length says so, else when the byte past the limit arrives."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            refusal = BodyTooLarge(self.max_bytes)
            body = {"error": type(refusal).__name__, "message": refusal.detail}
            await JSONResponse(body, status_code=413)(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        await self.app(scope, limited, send)

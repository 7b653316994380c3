"""The dashboard's files as a Starlette app of their own, served with strict headers.

The page holds no data: it is HTML, CSS and ES modules from ``static/``, the same for every member, so it is
served without a bearer token (a browser navigation cannot send one). TLS still demands the member's client
certificate before any byte of it is sent. Every response carries a Content-Security-Policy that allows only
the coordinator's own origin and no inline script or style, refuses framing, and is never cached.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
Receive = Callable[[], Awaitable[Message]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
PAGE_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    # The page is public, but a shared machine's cache should not keep what a member looked at.
    "cache-control": "no-store",
}


def dashboard_site(directory: Path = STATIC_DIR) -> AsgiApp:
    """The files of ``directory`` (``/`` answers ``index.html``), each response with `PAGE_HEADERS`."""
    return StrictHeaders(StaticFiles(directory=directory, html=True))


class StrictHeaders:
    """ASGI middleware: sets `PAGE_HEADERS` on every HTTP response of the app it wraps, replacing any the app
    set (StaticFiles' ETag and Last-Modified stay; a no-store response is not revalidated anyway)."""

    def __init__(self, app: AsgiApp) -> None:
        self._app = app
        self._headers = [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in PAGE_HEADERS.items()
        ]
        self._names = {name for name, _ in self._headers}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [
                    (name, value)
                    for name, value in message.get("headers", ())
                    if name.lower() not in self._names
                ]
                message = {**message, "headers": [*kept, *self._headers]}
            await send(message)

        await self._app(scope, receive, send_with_headers)

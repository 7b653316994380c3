"""Every answer of the coordinator's API says ``Cache-Control: no-store``: audit entries, jobs and agreements
are for the member who asked, not for a browser's or a proxy's cache. An answer that sets its own
Cache-Control (the dashboard's static page) keeps it."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class NoStoreByDefault:
    """ASGI middleware adding ``Cache-Control: no-store`` to every HTTP response that has none."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_no_store(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self._app(scope, receive, send_no_store)

"""Serve the coordinator app with uvicorn over mutual TLS, in a background thread that can be stopped.

TLS: the server presents the coordinator's TLS certificate and requires a client certificate chained to the
data space's CA (``CERT_REQUIRED``), so a client without one is refused in the handshake, before any request
exists. uvicorn 0.49 does not put the client certificate in the ASGI scope, so the server uses its documented
``http=`` option with `PeerCertificateProtocol`: uvicorn's own h11 protocol that adds the ASGI TLS extension
(``scope["extensions"]["tls"]``, asgiref's TLS extension spec) to every request of a TLS connection, with the
verified client certificate as ``client_cert_chain[0]`` (PEM). ``coordinator.auth`` reads it from there.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from coordinator.auth import TLS_EXTENSION
from coordinator.settings import CoordinatorSettings
from crypto.identity import CA_CERT_FILE, TLS_CERT_FILE, TLS_KEY_FILE

Scope = MutableMapping[str, Any]
AsgiApp = Callable[[Scope, Any, Any], Awaitable[None]]
STARTUP_TIMEOUT_S = 10.0
# A client that keeps an idle TLS connection open never answers the close: stop waiting for it after this.
GRACEFUL_SHUTDOWN_S = 3
_TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}  # the integers the ASGI TLS extension uses


def tls_extension(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    """The ASGI TLS extension for a connection, or None when it is not TLS (the spec forbids it then)."""
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": _TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": None,
    }


class PeerCertificateProtocol(H11Protocol):
    """uvicorn's h11 HTTP protocol, plus the ASGI TLS extension in the scope of each request."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        extension = tls_extension(transport)
        if extension is not None:
            self.app = _with_tls_extension(self.app, extension)


def _with_tls_extension(app: AsgiApp, extension: dict[str, Any]) -> AsgiApp:
    async def app_with_tls(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope["extensions"] = {**scope.get("extensions", {}), TLS_EXTENSION: dict(extension)}
        await app(scope, receive, send)

    return app_with_tls


def server_ssl_context(settings: CoordinatorSettings) -> ssl.SSLContext:
    """TLS 1.2+, the coordinator's TLS certificate, and a required client certificate of the CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.identity_dir / TLS_CERT_FILE, settings.identity_dir / TLS_KEY_FILE)
    context.load_verify_locations(cafile=settings.identity_dir / CA_CERT_FILE)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


class CoordinatorServer:
    """``start()`` binds ``settings.host:settings.port`` (0: any free port), serves, and returns the port;
    ``stop()`` lets running requests finish and returns once the server thread has ended."""

    def __init__(self, settings: CoordinatorSettings, app: FastAPI) -> None:
        self._settings = settings
        self._app = app
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    def start(self) -> int:
        """Raises RuntimeError if the server does not come up (the app's start-up failed, or it timed out)."""
        if self._thread is not None:
            raise RuntimeError("the coordinator server is already started")
        listener = socket.create_server((self._settings.host, self._settings.port))
        # asyncio sets TCP_NODELAY only on sockets it made itself; without it each small TLS write waits for a
        # delayed ACK (measured here: 45 ms per request instead of 3). Accepted sockets inherit it on Linux.
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port = listener.getsockname()[1]
        ssl_context = server_ssl_context(self._settings)
        config = uvicorn.Config(
            self._app,
            http=PeerCertificateProtocol,
            loop="asyncio",  # asyncio documents get_extra_info("ssl_object") on its TLS transports
            ws="none",
            lifespan="on",
            proxy_headers=False,  # who the caller is comes from its certificate, never from a header
            server_header=False,
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            ssl_context_factory=lambda _config, _default: ssl_context,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [listener]}, name="coordinator", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                listener.close()
                raise RuntimeError("the coordinator server did not start; see the log for the app's error")
            time.sleep(0.01)
        return self.port

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._server = None
        self._thread = None

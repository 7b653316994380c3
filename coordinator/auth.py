"""Who is calling the coordinator, and whether their role may call this route.

Transport: HTTPS with client certificates of the data space's CA; TLS refuses a client without one before any
request exists. The server (``coordinator.server``) hands the verified client certificate to the app in the
scope's ASGI TLS extension (``scope["extensions"]["tls"]["client_cert_chain"]``). Here the app re-derives the
principal from that certificate and checks the bearer token exactly as the node's gate does: signed by the
CA, unexpired, naming this peer and bound to this very certificate (RFC 8705 ``cnf.x5t#S256``). A scope
without the TLS extension (an app served some other way) is refused: fail closed.

Roles: a route declares its caller with one of the aliases below; the app also depends on
`authenticated_caller` for every route, so a route that forgets its alias is still authenticated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from crypto import Principal, Role, check_token_binding, principal_from_tls_certificate, verify_token
from crypto.errors import InvalidCertificate, InvalidToken

TLS_EXTENSION = "tls"
_BEARER = "bearer "
_CHALLENGE = 'Bearer realm="ipspace-coordinator"'


class AuthenticationFailed(Exception):
    def __init__(self, reason: str, *, token_presented: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.token_presented = token_presented


class CallerAuthenticator:
    """Turns (peer certificate, Authorization header) into a principal, or refuses with the reason."""

    def __init__(self, ca_cert_pem: bytes) -> None:
        self._ca_cert_pem = ca_cert_pem

    def authenticate(
        self, peer_certificate: bytes | None, authorization: str | None, *, now: datetime | None = None
    ) -> Principal:
        """The caller's principal, with the thumbprint of the certificate this connection presented.

        Guarantees: the certificate is a TLS certificate of this CA valid at ``now``; the token is valid and
        bound to it and names the same member. Raises AuthenticationFailed with a reason a person can act on.
        """
        if not peer_certificate:
            raise AuthenticationFailed("no client certificate: connect over mTLS with a data-space identity")
        try:
            peer = principal_from_tls_certificate(peer_certificate, self._ca_cert_pem, now=now)
        except InvalidCertificate as invalid:
            raise AuthenticationFailed(f"client certificate refused: {invalid}") from None
        token = _bearer_token(authorization)
        try:
            check_token_binding(verify_token(token, self._ca_cert_pem, now=now), peer)
        except InvalidToken as invalid:
            raise AuthenticationFailed(invalid.reason, token_presented=True) from None
        return peer


def peer_certificate(scope: Mapping[str, Any]) -> bytes | None:
    """The client's certificate (PEM) from the ASGI TLS extension, or None when the scope has none."""
    tls = (scope.get("extensions") or {}).get(TLS_EXTENSION)
    if not isinstance(tls, Mapping):
        return None
    chain = tls.get("client_cert_chain") or ()
    first = next(iter(chain), None)
    return first.encode("ascii") if isinstance(first, str) else None


def _bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise AuthenticationFailed(
            "no token: send 'Authorization: Bearer <token>' issued by the data-space CA"
        )
    if not authorization.lower().startswith(_BEARER):
        raise AuthenticationFailed("the Authorization header is not 'Bearer <token>'")
    return authorization[len(_BEARER) :].strip()


class AuthenticateFirst:
    """ASGI middleware: authenticate every request before anything reads its body.

    FastAPI parses a JSON body before it runs any dependency, so without this a caller with no valid token
    would hear about its body (422) instead of being refused (401). Paths under ``open_prefixes`` (each
    ending in "/"; the dashboard's static page, which holds no data) pass with the transport's client
    certificate alone. The
    caller found here is kept in the request's state for `authenticated_caller`.
    """

    def __init__(self, app: ASGIApp, authenticator: CallerAuthenticator, open_prefixes: tuple[str, ...] = ()):
        self._app = app
        self._authenticator = authenticator
        self._open_prefixes = open_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._is_open(scope["path"]):
            await self._app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            caller = self._authenticator.authenticate(peer_certificate(scope), headers.get("authorization"))
        except AuthenticationFailed as failed:
            challenge = f'{_CHALLENGE}, error="invalid_token"' if failed.token_presented else _CHALLENGE
            refusal = JSONResponse(
                {"detail": failed.reason},
                status_code=status.HTTP_401_UNAUTHORIZED,
                headers={"WWW-Authenticate": challenge},
            )
            await refusal(scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = caller
        await self._app(scope, receive, send)

    def _is_open(self, path: str) -> bool:
        return any(path == prefix.rstrip("/") or path.startswith(prefix) for prefix in self._open_prefixes)


def authenticated_caller(request: Request) -> Principal:
    """FastAPI dependency: the authenticated caller, or 401 with the reason and a Bearer challenge."""
    known = getattr(request.state, "caller", None)
    if isinstance(known, Principal):
        return known  # authenticated by `AuthenticateFirst` for this very request
    authenticator: CallerAuthenticator = request.app.state.authenticator
    try:
        caller = authenticator.authenticate(
            peer_certificate(request.scope), request.headers.get("authorization")
        )
    except AuthenticationFailed as failed:
        challenge = f'{_CHALLENGE}, error="invalid_token"' if failed.token_presented else _CHALLENGE
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, detail=failed.reason, headers={"WWW-Authenticate": challenge}
        ) from None
    request.state.caller = caller  # for handlers that run before the route, e.g. a malformed body's
    return caller


Caller = Annotated[Principal, Depends(authenticated_caller)]


def require_roles(*roles: Role, audit_action: str | None = None) -> Callable[..., Principal]:
    """A dependency that admits only callers holding one of ``roles``; others get 403 with the reason.

    With ``audit_action`` the refusal is also written to the app's event sink, so a refused registration,
    submission, cancel, download or query is on record like an allowed one (if it cannot be written, the
    call fails with 503 instead: `audit.AuditWriteError`).
    """
    allowed = frozenset(roles)
    names = ", ".join(sorted(role.value for role in allowed))

    def caller_with_role(request: Request, caller: Caller) -> Principal:
        if caller.role in allowed:
            return caller
        reason = (
            f"{request.method} {request.url.path} is open to the roles {names}; "
            f"{caller.name!r} of {caller.org!r} holds the role {caller.role.value!r}"
        )
        if audit_action is not None:
            request.app.state.events.record(
                actor=caller,
                action=audit_action,
                target=request.url.path,
                outcome="refused",
                status=status.HTTP_403_FORBIDDEN,
                reason=reason,
            )
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail=reason)

    return caller_with_role


# Route-level aliases: who may do what (issue 3, item 4).
JobReader = Annotated[Principal, Depends(require_roles(Role.BUILDER, Role.REGULATOR))]
JobSubmitter = Annotated[Principal, Depends(require_roles(Role.BUILDER, audit_action="job.submit"))]
JobCanceller = Annotated[Principal, Depends(require_roles(Role.BUILDER, audit_action="job.cancel"))]
ModelDownloader = Annotated[Principal, Depends(require_roles(Role.BUILDER, audit_action="model.download"))]
AgreementParty = Annotated[
    Principal,
    Depends(require_roles(Role.BUILDER, Role.CONSUMER, Role.PROVIDER, audit_action="agreement.register")),
]
QuerySender = Annotated[
    Principal, Depends(require_roles(Role.CONSUMER, Role.BUILDER, audit_action="query.match"))
]
# The same roles as match queries; a refusal is recorded under the valuation's own action.
ValuationSender = Annotated[
    Principal, Depends(require_roles(Role.CONSUMER, Role.BUILDER, audit_action="query.valuate"))
]
# The coordinator's own log is read by regulators only (reads are not recorded).
LogReader = Annotated[Principal, Depends(require_roles(Role.REGULATOR))]

"""Authentication at the gate: the mTLS peer certificate, and the caller's signed token bound to it.

TLS has already refused a client without a certificate from the data-space CA (the handshake fails, so no call
exists to record). This step re-reads the verified peer certificate to learn who is asking, then checks the
bearer token: signed by the CA, unexpired, and bound to this very certificate (RFC 8705 ``x5t#S256``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import UTC, datetime

import grpc

from crypto import (
    Principal,
    TokenClaims,
    check_token_binding,
    principal_from_tls_certificate,
    verify_token,
)
from crypto.errors import InvalidCertificate, InvalidToken

TOKEN_HEADER = "authorization"  # noqa: S105 - a header name, not a secret
_BEARER = "Bearer "


class AuthenticationFailed(Exception):
    """The caller could not be authenticated; ``peer`` is who the certificate says it is, when known."""

    def __init__(self, reason: str, peer: Principal | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.peer = peer


class _VerifiedCache:
    """A bounded map of what was already verified; entries are re-checked for expiry on every use.

    Verifying an ECDSA signature or a certificate chain costs more than the rest of the gate together, and a
    client sends the same token and certificate on every call.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._items: OrderedDict[bytes | str, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes | str) -> object | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: bytes | str, value: object) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)


class Authenticator:
    def __init__(self, ca_cert_pem: bytes) -> None:
        self._ca_cert_pem = ca_cert_pem
        self._principals = _VerifiedCache()
        self._tokens = _VerifiedCache()

    def authenticate(self, context: grpc.ServicerContext, *, now: datetime | None = None) -> Principal:
        """The caller's principal; raises AuthenticationFailed with a reason a person understands."""
        now = now or datetime.now(UTC)
        peer = self._peer(context, now)
        try:
            claims = self._claims(self._token(context), now)
            check_token_binding(claims, peer)
        except InvalidToken as invalid:
            raise AuthenticationFailed(invalid.reason, peer) from None
        except AuthenticationFailed as failed:  # the certificate told us who it is: record them by name
            raise AuthenticationFailed(failed.reason, peer) from None
        return peer

    def _peer(self, context: grpc.ServicerContext, now: datetime) -> Principal:
        certificates = context.auth_context().get("x509_pem_cert")
        if not certificates:
            raise AuthenticationFailed("no client certificate: connect with mTLS and a data-space identity")
        certificate = certificates[0]
        cached = self._principals.get(certificate)
        if isinstance(cached, tuple):
            principal, not_after = cached
            if now < not_after:
                return principal
        try:
            principal = principal_from_tls_certificate(certificate, self._ca_cert_pem, now=now)
        except InvalidCertificate as invalid:
            raise AuthenticationFailed(f"client certificate refused: {invalid}") from None
        self._principals.put(certificate, (principal, _not_after(certificate)))
        return principal

    @staticmethod
    def _token(context: grpc.ServicerContext) -> str:
        for key, value in context.invocation_metadata():
            if key == TOKEN_HEADER:
                if not value.startswith(_BEARER):
                    raise AuthenticationFailed("the authorization header is not 'Bearer <token>'")
                return value[len(_BEARER) :]
        raise AuthenticationFailed(
            "no token: send 'authorization: Bearer <token>' issued by the data-space CA"
        )

    def _claims(self, token: str, now: datetime) -> TokenClaims:
        cached = self._tokens.get(token)
        if isinstance(cached, TokenClaims):
            if now >= cached.expires_at:
                raise AuthenticationFailed(f"token expired at {cached.expires_at.isoformat()}")
            return cached
        try:
            claims = verify_token(token, self._ca_cert_pem, now=now)
        except InvalidToken as invalid:
            raise AuthenticationFailed(invalid.reason) from None
        self._tokens.put(token, claims)
        return claims


def _not_after(certificate_pem: bytes) -> datetime:
    from cryptography import x509

    return x509.load_pem_x509_certificate(certificate_pem).not_valid_after_utc

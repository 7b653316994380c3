"""Access tokens: ES256 JWTs signed by the CA key and bound to the holder's TLS certificate (RFC 8705).

A token says who the bearer is (name, org, role) until when; the `cnf.x5t#S256` claim ties it to one TLS
certificate, so a token lifted from one connection is useless on another. Verification allows no clock
leeway and accepts exactly one algorithm.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from crypto._clock import resolve_now
from crypto._x509 import load_ca_certificate
from crypto.errors import InvalidCertificate, InvalidToken
from crypto.principal import Principal, Role, check_label, parse_role

JWT_ISSUER = "ipspace-ca"
_ALGORITHM = "ES256"
_THUMBPRINT_CLAIM = "x5t#S256"
_SHA256_THUMBPRINT = re.compile(r"[A-Za-z0-9_-]{43}")  # 32 bytes, base64url without padding
_REQUIRED_CLAIMS = ["iss", "sub", "org", "role", "iat", "nbf", "exp", "jti", "cnf"]


@dataclass(frozen=True)
class TokenClaims:
    """What a verified token says: who, until when, and which TLS certificate it is bound to."""

    name: str
    org: str
    role: Role
    expires_at: datetime
    thumbprint: str


def sign_token(
    ca_key: ec.EllipticCurvePrivateKey, principal: Principal, *, ttl: timedelta, now: datetime | None = None
) -> str:
    """Encode and sign a token for `principal`, valid from `now` for `ttl`.

    Called by `CertificateAuthority.issue_token`, which holds the CA key.

    Raises ValueError if `ttl` is not positive or the principal has no TLS thumbprint to bind to.
    """
    if ttl <= timedelta(0):
        raise ValueError(f"token lifetime must be positive, not {ttl}")
    if not principal.tls_thumbprint:
        raise ValueError("principal has no TLS certificate thumbprint; a token must be bound to one")
    issued_at = int(resolve_now(now).timestamp())
    claims = {
        "iss": JWT_ISSUER,
        "sub": principal.name,
        "org": principal.org,
        "role": principal.role.value,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + int(ttl.total_seconds()),
        "jti": secrets.token_urlsafe(16),
        "cnf": {_THUMBPRINT_CLAIM: principal.tls_thumbprint},
    }
    return jwt.encode(claims, ca_key, algorithm=_ALGORITHM)


def verify_token(token: str, ca_cert_pem: bytes, *, now: datetime | None = None) -> TokenClaims:
    """Return the claims of a token signed by this data space's CA and valid at `now`.

    Guarantees: algorithm ES256 only (`none`, HMAC and others refused), signature by the key of the CA in
    `ca_cert_pem`, issuer `ipspace-ca`, every required claim present and well formed, nbf <= now < exp with
    no leeway. Raises InvalidToken whose `reason` says which of these failed. The binding to the peer is
    checked separately by `check_token_binding`.
    """
    if not isinstance(token, str) or not token:
        raise InvalidToken("token is missing or not text")
    at = resolve_now(now)
    try:
        ca = load_ca_certificate(ca_cert_pem)
    except InvalidCertificate as exc:
        raise InvalidToken(f"cannot check tokens: {exc}") from None
    if not ca.not_valid_before_utc <= at <= ca.not_valid_after_utc:
        raise InvalidToken(f"this data space's CA certificate is not valid at {at.isoformat()}")
    payload = _decode(token, ca.public_key())
    _check_times(payload, at)
    return _claims(payload)


def check_token_binding(claims: TokenClaims, peer: Principal) -> None:
    """Raise InvalidToken unless the token names this peer and is bound to the peer's TLS certificate."""
    if claims.org != peer.org:
        raise InvalidToken(f"token issued to org {claims.org!r}, but the connection is from org {peer.org!r}")
    if claims.role != peer.role:
        raise InvalidToken(
            f"token is for role {str(claims.role)!r}, but the peer's role is {str(peer.role)!r}"
        )
    if claims.name != peer.name:
        raise InvalidToken(f"token issued to {claims.name!r}, but the connection is from {peer.name!r}")
    presented = peer.tls_thumbprint.encode()
    if not presented or not hmac.compare_digest(claims.thumbprint.encode(), presented):
        raise InvalidToken("token bound to another certificate than the one this connection presented")


def _decode(token: str, ca_public_key: Any) -> dict[str, Any]:
    """Check algorithm, signature, issuer and presence of claims; map PyJWT's errors to reasons."""
    try:
        return jwt.decode(
            token,
            ca_public_key,
            algorithms=[_ALGORITHM],
            issuer=JWT_ISSUER,
            leeway=0,
            # Times are checked by _check_times against the injectable `now`; the signature always is here.
            options={
                "verify_signature": True,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "require": _REQUIRED_CLAIMS,
            },
        )
    except jwt.InvalidAlgorithmError:
        raise InvalidToken(
            f"token uses algorithm {_header_algorithm(token)!r}; only ES256 is accepted"
        ) from None
    except jwt.InvalidSignatureError:
        raise InvalidToken("token not signed by this data space's CA (or altered after signing)") from None
    except jwt.MissingRequiredClaimError as exc:
        raise InvalidToken(f"token lacks the required claim {exc.claim!r}") from None
    except jwt.InvalidIssuerError:
        raise InvalidToken(f"token was not issued by {JWT_ISSUER!r}") from None
    except jwt.DecodeError:
        raise InvalidToken("token is malformed: not a compact JWS") from None
    except jwt.InvalidTokenError as exc:
        raise InvalidToken(f"token rejected: {exc}") from None


def _header_algorithm(token: str) -> str:
    try:
        return str(jwt.get_unverified_header(token).get("alg"))
    except jwt.DecodeError:
        return "unknown"


def _check_times(payload: dict[str, Any], now: datetime) -> None:
    not_before = _time_claim(payload, "nbf")
    expires_at = _time_claim(payload, "exp")
    _time_claim(payload, "iat")
    if now < not_before:
        raise InvalidToken(f"token not valid before {not_before.isoformat()}")
    if now >= expires_at:
        raise InvalidToken(f"token expired at {expires_at.isoformat()}")


def _time_claim(payload: dict[str, Any], claim: str) -> datetime:
    value = payload[claim]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidToken(f"token claim {claim!r} is not a whole number of seconds")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidToken(f"token claim {claim!r} is out of range") from None


def _claims(payload: dict[str, Any]) -> TokenClaims:
    confirmation = payload["cnf"]
    thumbprint = confirmation.get(_THUMBPRINT_CLAIM) if isinstance(confirmation, dict) else None
    if not isinstance(thumbprint, str) or not thumbprint:
        raise InvalidToken("token is not bound to a TLS certificate (cnf.x5t#S256 missing)")
    if _SHA256_THUMBPRINT.fullmatch(thumbprint) is None:
        raise InvalidToken("token's cnf.x5t#S256 is not a base64url SHA-256 thumbprint")
    try:
        name = check_label("name", payload["sub"])
        org = check_label("org", payload["org"])
        role = parse_role(payload["role"])
    except (ValueError, TypeError) as exc:
        raise InvalidToken(f"token names an invalid member: {exc}") from None
    return TokenClaims(name, org, role, _time_claim(payload, "exp"), thumbprint)

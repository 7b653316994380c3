"""Who a peer is: roles, principals, and the rules for names that end up in certificates and tokens.

Names and org names appear in certificate subjects, DNS SANs, token claims, file paths and log lines, so they
are restricted to a small ASCII set that needs no escaping anywhere.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum

_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DNS_HOST = re.compile(r"[A-Za-z0-9_-]{1,63}(\.[A-Za-z0-9_-]{1,63})*")
_DNS_HOST_MAX = 253


class Role(StrEnum):
    """The part a member plays in the data space; written as OU= in its certificates."""

    PROVIDER = "provider"
    BUILDER = "builder"
    CONSUMER = "consumer"
    REGULATOR = "regulator"
    COORDINATOR = "coordinator"


@dataclass(frozen=True)
class Principal:
    """An authenticated member: the subject of a CA-issued certificate.

    `tls_thumbprint` is the RFC 8705 `x5t#S256` of the TLS certificate (base64url of SHA-256 over the DER,
    no padding). It is empty when the principal was proven by a signing certificate, which says who signed
    but not which TLS certificate they hold.
    """

    name: str
    org: str
    role: Role
    tls_thumbprint: str


def parse_role(value: str) -> Role:
    """Return the Role named by `value`; raise ValueError naming the accepted roles otherwise."""
    try:
        return Role(value)
    except ValueError:
        accepted = ", ".join(role.value for role in Role)
        raise ValueError(f"unknown role {value!r}; expected one of: {accepted}") from None


def check_label(kind: str, value: str) -> str:
    """Return `value` if it is a valid name or org; raise ValueError saying what is allowed otherwise.

    Allowed: 1 to 64 ASCII letters, digits, '-', '_' or '.', starting with a letter or digit.
    """
    if not isinstance(value, str) or _LABEL.fullmatch(value) is None:
        raise ValueError(
            f"{kind} {value!r} is not allowed: use 1 to 64 letters, digits, '-', '_' or '.', "
            "starting with a letter or digit"
        )
    return value


def check_host(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | str:
    """Return `host` as an IP address, or as a DNS name if it is a plain one; raise ValueError otherwise."""
    if not isinstance(host, str):
        raise ValueError(f"host {host!r} must be a string")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if len(host) > _DNS_HOST_MAX or _DNS_HOST.fullmatch(host) is None:
        raise ValueError(f"host {host!r} is neither an IP address nor a plain DNS name")
    return host

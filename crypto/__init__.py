"""Who is asking and how it is proven: the data space's CA, mTLS identities, signatures, tokens.

The safe API is re-exported here. Raw key material lives behind underscore modules
(`crypto._secret_access`, `crypto._keyfiles`, `crypto._x509`).
"""

from __future__ import annotations

from crypto import errors
from crypto.ca import CertificateAuthority
from crypto.canonical import canonical_json, digest
from crypto.identity import Identity, principal_from_tls_certificate, verify_signature
from crypto.principal import Principal, Role
from crypto.tls import channel_credentials, server_credentials
from crypto.tokens import TokenClaims, check_token_binding, verify_token

__all__ = [
    "CertificateAuthority",
    "Identity",
    "Principal",
    "Role",
    "TokenClaims",
    "canonical_json",
    "channel_credentials",
    "check_token_binding",
    "digest",
    "errors",
    "principal_from_tls_certificate",
    "server_credentials",
    "verify_signature",
    "verify_token",
]

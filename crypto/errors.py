"""One exception class per kind of failure in `crypto`.

Every check in this package either returns normally or raises one of these; none returns a boolean that a
caller could forget to test. Messages are written for a person (an operator reading a log or a CLI error).
"""

from __future__ import annotations


class CryptoError(Exception):
    """Base class of every failure raised on purpose by `crypto`."""


class InvalidCertificate(CryptoError):
    """A certificate is malformed, not issued by this data space's CA, outside its validity, or of the
    wrong kind (a signing certificate offered for TLS, or the reverse)."""


class InvalidSignature(CryptoError):
    """A signature does not match the message and the signer's certificate."""


class InvalidToken(CryptoError):
    """A token is malformed, forged, expired, or bound to another peer.

    `reason` says why in words a person understands ("token expired at 2026-01-01T10:00:00+00:00").
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidKeyFile(CryptoError):
    """A private key file is unreadable, of the wrong type, or does not match its certificate."""

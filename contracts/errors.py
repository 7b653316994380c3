"""Errors of the agreement schema: one class per kind of failure, each with a reason a person can use."""

from __future__ import annotations

from pathlib import Path


class ContractError(Exception):
    """Base of every failure raised by `contracts` (offers, agreements, revocations, ODRL documents)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OfferError(ContractError):
    """An offer file or document that cannot be used: unreadable, not JSON, or a field with a bad value.

    `path` is the offending file when the offer came from one; the reason then starts with it.
    """

    def __init__(self, reason: str, *, path: Path | None = None) -> None:
        super().__init__(f"{path}: {reason}" if path is not None else reason)
        self.path = path


class AgreementError(ContractError):
    """An agreement (or a proposal for one) that is malformed, badly signed, or signed by the wrong party."""


class RevocationError(ContractError):
    """A revocation that is malformed, badly signed, or not signed by one of the agreement's parties."""


class OdrlError(ContractError):
    """A JSON-LD document that is not an ODRL policy written by ipspace (wrong context, type or shape)."""

"""One exception class per kind of failure in `audit`.

Messages are written for a person: an operator reading a node's log, or a regulator reading the verifier's
output. None of these carries entry contents, only indices, sizes and hashes.
"""

from __future__ import annotations


class AuditError(Exception):
    """Base class of every failure raised on purpose by `audit`."""


class AuditWriteError(AuditError):
    """An entry (or a tree head) could not be committed durably: the caller must fail the request it logs."""


class AuditCorrupted(AuditError):
    """The log file on disk breaks the log's own invariants (for example a gap in the entry indices)."""


class InvalidProof(AuditError):
    """An inclusion or consistency proof does not prove what it claims. `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RootMismatch(InvalidProof):
    """A proof is well formed but leads to another root than the trusted one."""

    def __init__(self, expected: bytes, calculated: bytes, *, which: str = "root") -> None:
        super().__init__(f"{which} mismatch: expected {expected.hex()}, calculated {calculated.hex()}")
        self.expected = expected
        self.calculated = calculated


class InvalidTreeHead(AuditError):
    """A signed tree head is malformed, its signature does not verify, or its signer is not the named node."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BundleInvalid(AuditError):
    """An exported audit bundle fails verification.

    `first_bad_index` is the first entry index that the bundle does not prove (None when the problem is not
    tied to an entry, such as a missing file or a bundle without any tree head); `reason` says why.
    """

    def __init__(self, first_bad_index: int | None, reason: str) -> None:
        where = "bundle" if first_bad_index is None else f"entry {first_bad_index}"
        super().__init__(f"{where}: {reason}")
        self.first_bad_index = first_bad_index
        self.reason = reason

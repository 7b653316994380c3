"""Helpers of the audit log tests: entries to append and a wait for the writer thread."""

from __future__ import annotations

import time

from audit import AuditEntry


def entry(n: int = 0, **changes: object) -> AuditEntry:
    """A valid allowed reveal by `user-{n}` charged `n % 7` records, with the fields in `changes` replaced."""
    fields = {
        "time": "2025-03-01T12:00:00.000000Z",
        "node": "node-a",
        "actor": f"user-{n}",
        "org": "beta",
        "role": "consumer",
        "method": "/ipspace.v1.Provider/Reveal",
        "decision": "allow",
        "status": "OK",
        "reason": "allowed by agreement",
        "charges": {"reveal_records": n % 7},
    }
    fields.update(changes)
    return AuditEntry(**fields)  # type: ignore[arg-type]


def wait_until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)

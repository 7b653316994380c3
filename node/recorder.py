"""The gate's record step: one call becomes one audit entry, with its effects in the same transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import grpc

from audit import AuditEntry, AuditLog, AuditWriteError
from crypto import Principal
from node.rpc_table import RequestFacts
from node.state import Effect, EffectRefused


@dataclass(frozen=True)
class CallRecord:
    method: str
    action: str
    principal: Principal | None
    facts: RequestFacts
    allowed: bool
    status: str
    reason: str
    request_digest: str
    response_digest: str = ""
    charges: dict[str, int] = field(default_factory=dict)


class RecordRefused(Exception):
    """An effect of the call was refused inside the audit transaction; nothing of the call was written."""

    def __init__(self, status: grpc.StatusCode, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class AuditUnavailable(Exception):
    """The audit entry could not be written durably; the call must fail."""


class Recorder:
    def __init__(self, log: AuditLog, node_name: str) -> None:
        self._log = log
        self._node = node_name

    def record(self, record: CallRecord, effects: Sequence[Effect] = ()) -> int:
        """Append the call's entry, durably, with its effects in the same transaction; returns its index.

        Raises RecordRefused when an effect refuses (a budget would be exceeded), AuditUnavailable when the
        log cannot be written.
        """
        entry = self._entry(record)

        def apply_effects(connection: sqlite3.Connection) -> None:
            for effect in effects:
                effect(connection)

        try:
            return self._log.append(entry, in_txn=apply_effects if effects else None)
        except EffectRefused as refused:
            raise RecordRefused(refused.status, refused.reason) from None
        except AuditWriteError as error:
            raise AuditUnavailable(str(error)) from error

    def _entry(self, record: CallRecord) -> AuditEntry:
        principal = record.principal
        facts = record.facts
        return AuditEntry(
            time=datetime.now(UTC).isoformat(timespec="microseconds"),
            node=self._node,
            actor=principal.name if principal else "",
            org=principal.org if principal else "",
            role=str(principal.role) if principal else "",
            method=record.method,
            dataset=facts.dataset or "",
            agreement_id=facts.agreement_id or "",
            purpose=facts.purpose or "",
            decision="allow" if record.allowed else "deny",
            status=record.status,
            reason=record.reason,
            request_digest=record.request_digest,
            response_digest=record.response_digest,
            charges=dict(record.charges),
            target=facts.job_grant.body.job_id if facts.job_grant is not None else None,
        )

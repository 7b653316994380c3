"""The coordinator's own tamper-evident log: its events as entries of the same signed log the nodes keep.

`CoordinatorLog` is the app's `EventSink`. It writes each event as an `audit.AuditEntry` to an
`audit.AuditLog` (SQLite, RFC 9162 Merkle tree, signed tree heads) at ``<data_dir>/audit.db``
(`CoordinatorSettings.own_log_file`), signed with the coordinator's identity under its name, so
`audit.verify_bundle` and ``ipspace audit verify`` check an export of it exactly like a node's.

One event, one entry:

    node          the coordinator's name (its certificate's)
    actor, org, role  the authenticated caller
    method        the action: "agreement.register", "job.submit", "job.cancel", "model.download",
                  "query.match", "query.valuate"
    decision      "allow" when the action was done ("ok"), "deny" when refused or failed
    status        the HTTP status the caller got, as text ("201", "403"); "500" for a failure
    reason        the refusal's reason; for a failure ("error") the exception's type only
    target        what the action was about: a job id, an agreement id, the agreement ids of a match
                  query, or the URL path when the body was not read
    dataset, purpose, agreement_id   where the route knows them (several agreements: see
                  `coordinator.events.joined_ids`)

`event_outcome` reads the outcome back from an entry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from audit import AuditEntry, AuditLog, AuditWriteError, timestamp_text
from crypto import Identity, Principal

logger = logging.getLogger(__name__)

OUTCOMES = ("ok", "refused", "error")
ERROR_STATUS = "500"
# Targets and reasons can echo what a caller sent (a 422's field names, a match query's grant keys): bound
# them, so one request can not write megabytes into a log that is kept for ever.
MAX_TARGET_CHARS = 4096
MAX_REASON_CHARS = 4096


class CoordinatorLog:
    """An `EventSink` over the coordinator's own `AuditLog`. Thread-safe.

    Opening checks the file against its own latest signed head (`audit.AuditCorrupted` if an entry was
    edited while the coordinator was down). ``close()`` signs a closing head; the app's lifespan calls it.
    """

    def __init__(
        self,
        path: Path,
        identity: Identity,
        *,
        head_every: int = 1000,
        head_interval_s: float = 5.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._log = AuditLog(
            path,
            identity,
            identity.name,
            head_every=head_every,
            head_interval_s=head_interval_s,
            clock=self._clock,
        )

    @property
    def log(self) -> AuditLog:
        """The log itself, for reading: heads, entries, proofs."""
        return self._log

    def record(
        self,
        *,
        actor: Principal,
        action: str,
        target: str,
        outcome: str,
        status: int,
        reason: str = "",
        dataset: str | None = None,
        purpose: str | None = None,
        agreement_id: str | None = None,
    ) -> None:
        """Append the event; return once it is durable. Raises AuditWriteError when it could not be written
        (the event is then in the server's log, for the operator), ValueError for an unknown outcome."""
        entry = event_entry(
            self._log.node,
            actor=actor,
            action=action,
            target=target,
            outcome=outcome,
            status=status,
            reason=reason,
            dataset=dataset,
            purpose=purpose,
            agreement_id=agreement_id,
            at=self._clock(),
        )
        try:
            self._log.append(entry)
        except AuditWriteError:
            logger.error(
                "the audit log could not record %s by %s/%s on %s (%s, HTTP %s); the call fails with 503",
                action,
                actor.org,
                actor.name,
                entry.target,
                outcome,
                status,
            )
            raise

    def close(self) -> None:
        """Sign a closing head and close the file. Idempotent. Raises AuditWriteError if it could not."""
        self._log.close()


def event_entry(
    node: str,
    *,
    actor: Principal,
    action: str,
    target: str,
    outcome: str,
    status: int,
    reason: str,
    dataset: str | None,
    purpose: str | None,
    agreement_id: str | None,
    at: datetime,
) -> AuditEntry:
    """The entry that records one event (see the module's table). Raises ValueError for an unknown outcome."""
    if outcome not in OUTCOMES:
        raise ValueError(f"an event's outcome is one of {OUTCOMES}, got {outcome!r}")
    return AuditEntry(
        time=timestamp_text(at),
        node=node,
        actor=actor.name,
        org=actor.org,
        role=actor.role.value,
        method=action,
        decision="allow" if outcome == "ok" else "deny",
        status=ERROR_STATUS if outcome == "error" else str(status),
        reason=_bounded(reason, MAX_REASON_CHARS),
        dataset=_optional(dataset),
        agreement_id=_optional(agreement_id),
        purpose=_optional(purpose),
        target=_bounded(target, MAX_TARGET_CHARS),
    )


def event_outcome(entry: AuditEntry) -> str:
    """The outcome an entry of this log records: "ok", "refused" or "error" (denied with status 500)."""
    if entry.decision == "allow":
        return "ok"
    return "error" if entry.status == ERROR_STATUS else "refused"


def _bounded(text: str, limit: int) -> str:
    # A JSON body may carry lone surrogates ("\udc80"), which no canonical leaf can hold: keep them escaped.
    clean = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(clean) <= limit:
        return clean
    return f"{clean[:limit]}... ({len(clean) - limit} more characters)"


def _optional(text: str | None) -> str | None:
    return None if text is None else _bounded(text, MAX_TARGET_CHARS)

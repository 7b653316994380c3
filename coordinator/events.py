"""The coordinator's record of its own actions: every call that changes state, allowed or refused.

Every route goes through one call, ``EventSink.record(...)``, or the ``audited`` block around it; the sink is
`coordinator.own_log.CoordinatorLog`, the same signed, tamper-evident log the nodes keep. A sink records
durably before it returns and raises `audit.AuditWriteError` when it cannot: the call then fails (503, see
``coordinator.api``) instead of succeeding unrecorded.

Several agreements, one entry: an action that uses several agreements (a job, a match query) records them
all in its one ``agreement_id`` field, as the agreement ids sorted and joined by "," (`joined_ids`). Ids are
"sha256:<hex>" digests, so the separator is unambiguous, and "which actions used agreement X" is a substring
search.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from fastapi import HTTPException

from audit import AuditWriteError
from crypto import Principal

ID_SEPARATOR = ","


class EventSink(Protocol):
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
        """Record one event durably before returning; raise AuditWriteError if it could not be."""
        ...


def joined_ids(agreement_ids: Iterable[str]) -> str:
    """The one ``agreement_id`` value of an action over several agreements: sorted, distinct, ","-joined."""
    return ID_SEPARATOR.join(sorted(set(agreement_ids)))


@dataclass
class Outcome:
    """What an audited block records when it ends; the route fills in what it learns on the way.

    ``undo`` takes the block's effect back; it runs only when the block succeeded but its record could not
    be written, so that an effect that would go on unrecorded (a started job) does not.
    """

    target: str
    status: int = 200
    reason: str = ""
    dataset: str | None = None
    purpose: str | None = None
    agreement_id: str | None = None
    undo: Callable[[], None] | None = None

    def about(self, *, dataset: str, purpose: str, agreement_ids: Iterable[str]) -> None:
        """Name the dataset, purpose and agreements the action concerns (see `joined_ids`)."""
        self.dataset = dataset
        self.purpose = purpose
        self.agreement_id = joined_ids(agreement_ids)


@contextmanager
def audited(sink: EventSink, actor: Principal, action: str, target: str) -> Iterator[Outcome]:
    """Record ``action`` by ``actor`` once the block ends: "ok", or "refused" with the HTTP refusal's reason.

    Any other exception is recorded as "error" (its type only: its text may hold internals) and re-raised.
    Raises AuditWriteError when the record cannot be written, after running ``Outcome.undo`` if set.
    """
    outcome = Outcome(target=target)
    try:
        yield outcome
    except HTTPException as refusal:
        _record(
            sink,
            actor,
            action,
            outcome,
            result="refused",
            status=refusal.status_code,
            reason=str(refusal.detail),
        )
        raise
    except AuditWriteError:
        raise  # a record inside the block failed already: recording that would fail the same way
    except Exception as error:
        _record(sink, actor, action, outcome, result="error", status=500, reason=type(error).__name__)
        raise
    try:
        _record(sink, actor, action, outcome, result="ok", status=outcome.status, reason=outcome.reason)
    except AuditWriteError:
        if outcome.undo is not None:
            outcome.undo()
        raise


def _record(
    sink: EventSink, actor: Principal, action: str, outcome: Outcome, *, result: str, status: int, reason: str
) -> None:
    sink.record(
        actor=actor,
        action=action,
        target=outcome.target,
        outcome=result,
        status=status,
        reason=reason,
        dataset=outcome.dataset,
        purpose=outcome.purpose,
        agreement_id=outcome.agreement_id,
    )

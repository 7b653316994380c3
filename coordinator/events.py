"""The coordinator's record of its own actions: one JSON line per job submission, cancel or model download.

For now an append-only JSONL file; the signed audit log replaces it later. Every caller goes through one
call, ``EventSink.record(...)`` (or the ``audited`` block around it), so swapping the sink touches no route.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from fastapi import HTTPException

from contracts.fields import utc_text
from crypto import Principal


class EventSink(Protocol):
    def record(
        self, *, actor: Principal, action: str, target: str, outcome: str, status: int, reason: str = ""
    ) -> None: ...


class JsonlEventLog:
    """Appends one line per event to ``path`` and syncs it to disk before returning."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def record(
        self, *, actor: Principal, action: str, target: str, outcome: str, status: int, reason: str = ""
    ) -> None:
        line = json.dumps(
            {
                "time": utc_text(datetime.now(UTC)),
                "actor": {"name": actor.name, "org": actor.org, "role": str(actor.role)},
                "action": action,
                "target": target,
                "outcome": outcome,
                "status": status,
                "reason": reason,
            },
            sort_keys=True,
        )
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())


@dataclass
class Outcome:
    """What an audited block reports when it ends normally; the route fills it in."""

    target: str
    status: int = 200
    reason: str = ""


@contextmanager
def audited(sink: EventSink, actor: Principal, action: str, target: str) -> Iterator[Outcome]:
    """Record ``action`` by ``actor`` once the block ends: "ok", or "refused" with the HTTP refusal's reason.

    Any other exception is recorded as "error" (its type only: its text may hold internals) and re-raised.
    """
    outcome = Outcome(target=target)
    try:
        yield outcome
    except HTTPException as refusal:
        sink.record(
            actor=actor,
            action=action,
            target=outcome.target,
            outcome="refused",
            status=refusal.status_code,
            reason=str(refusal.detail),
        )
        raise
    except Exception as error:
        sink.record(
            actor=actor,
            action=action,
            target=outcome.target,
            outcome="error",
            status=500,
            reason=type(error).__name__,
        )
        raise
    sink.record(
        actor=actor,
        action=action,
        target=outcome.target,
        outcome="ok",
        status=outcome.status,
        reason=outcome.reason,
    )

"""The node's own state: agreements, agreement requests, revocations and budgets.

The state lives in the same SQLite file as the audit log, so that every change to it commits in the same
transaction as the audit entry of the call that caused it (ARCHITECTURE.md: "budget spend is committed in the
same transaction as the audit entry"). This module therefore never writes on its own: a write is an
:class:`Effect`, a function of the audit writer's connection that the gate runs inside that transaction. Reads
use a per-thread connection of their own; WAL lets them run beside the writer.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc

from contracts.agreements import Agreement
from contracts.revocations import Revocation

Effect = Callable[[sqlite3.Connection], None]

SCHEMA = """
CREATE TABLE IF NOT EXISTS agreements (
    agreement_id TEXT PRIMARY KEY,
    agreement_json TEXT NOT NULL,
    consumer_org TEXT NOT NULL,
    dataset TEXT NOT NULL,
    stored_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS agreement_requests (
    request_id TEXT PRIMARY KEY,
    proposal_json TEXT NOT NULL,
    consumer_org TEXT NOT NULL,
    offer_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected')),
    reason TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    decided_at TEXT
);
CREATE TABLE IF NOT EXISTS revocations (
    agreement_id TEXT PRIMARY KEY,
    revocation_json TEXT NOT NULL,
    revoked_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS budgets (
    agreement_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    used INTEGER NOT NULL CHECK (used >= 0),
    PRIMARY KEY (agreement_id, kind)
);
-- One differential-privacy ledger per agreement: its RDP history (JSON, policies/privacy_accountant.py) and
-- the epsilon it amounts to at the agreement's delta, kept beside it so that reading it needs no accountant.
CREATE TABLE IF NOT EXISTS privacy_ledgers (
    agreement_id TEXT PRIMARY KEY,
    ledger_json TEXT NOT NULL,
    epsilon_spent REAL NOT NULL,
    delta REAL NOT NULL,
    updated_at TEXT NOT NULL
);
-- Revocations and agreements are facts of record: they are never edited or removed.
CREATE TRIGGER IF NOT EXISTS revocations_append_only_update BEFORE UPDATE ON revocations
BEGIN SELECT RAISE(ABORT, 'revocations are append-only'); END;
CREATE TRIGGER IF NOT EXISTS revocations_append_only_delete BEFORE DELETE ON revocations
BEGIN SELECT RAISE(ABORT, 'revocations are append-only'); END;
CREATE TRIGGER IF NOT EXISTS agreements_append_only_update BEFORE UPDATE ON agreements
BEGIN SELECT RAISE(ABORT, 'agreements are append-only'); END;
CREATE TRIGGER IF NOT EXISTS agreements_append_only_delete BEFORE DELETE ON agreements
BEGIN SELECT RAISE(ABORT, 'agreements are append-only'); END;
"""

REVEAL_RECORDS = "reveal.records"
MATCH_QUERIES = "match.queries"
QUERY_GRANT_PREFIX = "match.grant."  # one budgets row per used query grant: a grant answers once


def match_queries_on(day: str) -> str:
    """The budget kind counting one UTC day's match queries (day as YYYY-MM-DD)."""
    return f"{MATCH_QUERIES}.{day}"


# A request's id is its proposal's agreement id, so an approved request joins its stored agreement.
_SELECT_REQUESTS = (
    "SELECT r.request_id, r.proposal_json, r.consumer_org, r.offer_id, r.purpose, r.state, r.reason,"
    " a.agreement_id FROM agreement_requests r LEFT JOIN agreements a"
    " ON a.agreement_id = r.request_id"
)


class EffectRefused(Exception):
    """An effect cannot apply; raised inside the audit transaction, which then writes nothing of the call but
    its denial."""

    status = grpc.StatusCode.FAILED_PRECONDITION

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BudgetExhausted(EffectRefused):
    """A charge would take an agreement past its limit."""

    status = grpc.StatusCode.RESOURCE_EXHAUSTED


class GrantAlreadyUsed(EffectRefused):
    """A one-use grant came a second time (a replay)."""

    status = grpc.StatusCode.PERMISSION_DENIED


class AlreadyDecided(EffectRefused):
    """A second decision on an agreement request that was decided already."""


@dataclass(frozen=True)
class AgreementRequestRecord:
    request_id: str
    proposal_json: str
    consumer_org: str
    offer_id: str
    purpose: str
    state: str
    reason: str
    agreement_id: str | None


def _now_text(now: datetime | None) -> str:
    return (now or datetime.now(UTC)).isoformat()


class NodeState:
    """Read access to the node's state, and the effects that change it."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    @staticmethod
    def create_schema(path: Path) -> None:
        """Create the state tables (idempotent); runs before the audit writer starts."""
        with sqlite3.connect(path) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(SCHEMA)
        connection.close()

    def _reader(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self._path, check_same_thread=False)
            connection.execute("PRAGMA query_only=ON")
            connection.execute("PRAGMA busy_timeout=5000")
            self._local.connection = connection
            with self._lock:
                self._all.append(connection)
        return connection

    def close(self) -> None:
        with self._lock:
            for connection in self._all:
                connection.close()
            self._all.clear()

    # --- reads -------------------------------------------------------------------------------------------

    def agreement(self, agreement_id: str) -> Agreement | None:
        row = (
            self._reader()
            .execute("SELECT agreement_json FROM agreements WHERE agreement_id = ?", (agreement_id,))
            .fetchone()
        )
        return Agreement.model_validate_json(row[0]) if row else None

    def is_revoked(self, agreement_id: str) -> bool:
        row = (
            self._reader()
            .execute("SELECT 1 FROM revocations WHERE agreement_id = ?", (agreement_id,))
            .fetchone()
        )
        return row is not None

    def budget_used(self, agreement_id: str, kind: str) -> int:
        row = (
            self._reader()
            .execute("SELECT used FROM budgets WHERE agreement_id = ? AND kind = ?", (agreement_id, kind))
            .fetchone()
        )
        return int(row[0]) if row else 0

    def privacy_ledger(self, agreement_id: str) -> tuple[str, float] | None:
        """The agreement's privacy ledger (JSON) and the epsilon it amounts to; None before any training."""
        row = (
            self._reader()
            .execute(
                "SELECT ledger_json, epsilon_spent FROM privacy_ledgers WHERE agreement_id = ?",
                (agreement_id,),
            )
            .fetchone()
        )
        return (row[0], float(row[1])) if row else None

    def agreement_request(self, request_id: str) -> AgreementRequestRecord | None:
        row = self._reader().execute(_SELECT_REQUESTS + " WHERE r.request_id = ?", (request_id,)).fetchone()
        return AgreementRequestRecord(*row) if row else None

    def agreement_requests(self, state: str | None = None) -> list[AgreementRequestRecord]:
        query = _SELECT_REQUESTS
        parameters: tuple[str, ...] = ()
        if state is not None:
            query += " WHERE r.state = ?"
            parameters = (state,)
        return [
            AgreementRequestRecord(*row)
            for row in self._reader().execute(query + " ORDER BY r.created_at", parameters)
        ]

    # --- effects (run inside the audit transaction) ------------------------------------------------------

    @staticmethod
    def store_agreement(agreement: Agreement, *, now: datetime | None = None) -> Effect:
        def effect(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT OR IGNORE INTO agreements VALUES (?, ?, ?, ?, ?)",
                (
                    agreement.agreement_id,
                    agreement.model_dump_json(),
                    agreement.terms.consumer_org,
                    agreement.terms.dataset,
                    _now_text(now),
                ),
            )

        return effect

    @staticmethod
    def open_request(request_id: str, proposal: Agreement, *, now: datetime | None = None) -> Effect:
        terms = proposal.terms

        def effect(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT OR IGNORE INTO agreement_requests"
                " (request_id, proposal_json, consumer_org, offer_id, purpose, state, created_at)"
                " VALUES (?, ?, ?, ?, ?, 'pending', ?)",
                (
                    request_id,
                    proposal.model_dump_json(),
                    terms.consumer_org,
                    terms.offer_id,
                    terms.purpose,
                    _now_text(now),
                ),
            )

        return effect

    @staticmethod
    def close_request(request_id: str, *, approved: bool, reason: str, now: datetime | None = None) -> Effect:
        def effect(connection: sqlite3.Connection) -> None:
            # Only a pending request may be decided: a second decision (a race between two approvers, say)
            # must not overwrite the first, so the update is conditional and checked.
            cursor = connection.execute(
                "UPDATE agreement_requests SET state = ?, reason = ?, decided_at = ?"
                " WHERE request_id = ? AND state = 'pending'",
                ("approved" if approved else "rejected", reason, _now_text(now), request_id),
            )
            if cursor.rowcount != 1:
                raise AlreadyDecided(f"agreement request {request_id} was already decided")

        return effect

    @staticmethod
    def store_revocation(revocation: Revocation) -> Effect:
        def effect(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT OR IGNORE INTO revocations VALUES (?, ?, ?)",
                (revocation.agreement_id, revocation.model_dump_json(), revocation.revoked_at.isoformat()),
            )

        return effect

    @staticmethod
    def use_query_grant(agreement_id: str, grant_id: str) -> Effect:
        """Mark a query grant used; refuse (GrantAlreadyUsed) if it was, inside the audit transaction."""

        def effect(connection: sqlite3.Connection) -> None:
            inserted = connection.execute(
                "INSERT OR IGNORE INTO budgets (agreement_id, kind, used) VALUES (?, ?, 1)",
                (agreement_id, f"{QUERY_GRANT_PREFIX}{grant_id}"),
            )
            if inserted.rowcount != 1:
                raise GrantAlreadyUsed(
                    f"query grant {grant_id} was already used; the consumer signs a new one for each query"
                )

        return effect

    @staticmethod
    def charge(agreement_id: str, kind: str, amount: int, limit: int | None) -> Effect:
        """Charge ``amount`` units of ``kind`` to an agreement; refuse (raise BudgetExhausted) past ``limit``.

        The check and the charge are one conditional statement inside the audit transaction, so two calls
        that both passed the gate's decision cannot together exceed the limit.
        """

        def effect(connection: sqlite3.Connection) -> None:
            connection.execute(
                "INSERT OR IGNORE INTO budgets (agreement_id, kind, used) VALUES (?, ?, 0)",
                (agreement_id, kind),
            )
            cursor = connection.execute(
                "UPDATE budgets SET used = used + ? WHERE agreement_id = ? AND kind = ?"
                " AND (? IS NULL OR used + ? <= ?)",
                (amount, agreement_id, kind, limit, amount, limit),
            )
            if cursor.rowcount != 1:
                used = connection.execute(
                    "SELECT used FROM budgets WHERE agreement_id = ? AND kind = ?", (agreement_id, kind)
                ).fetchone()[0]
                raise BudgetExhausted(
                    f"agreement {agreement_id[:19]}… allows {limit} {kind} in total; {used} are used and "
                    f"this call asks for {amount} more"
                )

        return effect

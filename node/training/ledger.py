"""The privacy charge of one training round, as an effect that commits with the call's audit entry.

The node's state (``node/state.py``) never writes on its own; this effect runs inside the audit writer's
transaction. It reads the agreement's stored RDP history, adds the round's spend, checks the composed epsilon
against the agreement's budget and stores the new history. A charge that would exceed the budget raises
BudgetExhausted there, so the transaction holds only the call's denial and the update is never released. Two
rounds decided at once are serialised by that transaction: they cannot both spend the last of a budget.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import grpc

from node.state import BudgetExhausted, Effect, EffectRefused
from policies.privacy_accountant import (
    LedgerCorrupted,
    PrivacyBudgetExhausted,
    PrivacySpend,
    charge,
    check_budget,
    history_from_json,
    history_to_json,
    spent_epsilon,
)

# Without an agreement budget there is no delta to report at; the ledger is still kept, and read at this one.
REPORTING_DELTA = 1e-5


class LedgerChanged(EffectRefused):
    """The ledger moved between planning a round and committing it (another job under the same agreement)."""

    status = grpc.StatusCode.ABORTED


def charge_privacy(
    agreement_id: str,
    spend: PrivacySpend,
    *,
    planned_on: str | None,
    epsilon_budget: float | None,
    delta: float | None,
) -> Effect:
    """An effect charging `spend` to the agreement's ledger, which must still be `planned_on`.

    `planned_on` is the ledger JSON the round was planned and reported against (None: no ledger yet). The
    effect refuses, inside the transaction: LedgerChanged when the stored ledger is another one by now
    (the reply already states the epsilon after this round, so it must be exactly this charge),
    BudgetExhausted past the budget (its reason says what remains), EffectRefused for a stored ledger that
    cannot be read back (training stays refused; a ledger is never reset).
    """
    at_delta = delta if delta is not None else REPORTING_DELTA

    def effect(connection: sqlite3.Connection) -> None:
        row = connection.execute(
            "SELECT ledger_json FROM privacy_ledgers WHERE agreement_id = ?", (agreement_id,)
        ).fetchone()
        stored = row[0] if row else None
        if stored != planned_on:
            raise LedgerChanged(
                "another job trained under this agreement during this round, so its privacy spend changed; "
                "the update is withheld and nothing is charged: run the round again"
            )
        try:
            history = history_from_json(stored) if stored is not None else ()
        except LedgerCorrupted as error:
            raise EffectRefused(f"the privacy ledger of this agreement is damaged: {error}") from None
        try:
            if epsilon_budget is None:
                epsilon = spent_epsilon(charge(history, spend), at_delta)
            else:
                epsilon = check_budget(history, spend, delta=at_delta, epsilon_budget=epsilon_budget)
        except PrivacyBudgetExhausted as exhausted:
            raise BudgetExhausted(str(exhausted)) from None
        connection.execute(
            "INSERT INTO privacy_ledgers (agreement_id, ledger_json, epsilon_spent, delta, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (agreement_id) DO UPDATE SET"
            " ledger_json = excluded.ledger_json, epsilon_spent = excluded.epsilon_spent,"
            " updated_at = excluded.updated_at",
            (
                agreement_id,
                history_to_json(charge(history, spend)),
                epsilon,
                at_delta,
                datetime.now(UTC).isoformat(),
            ),
        )

    return effect

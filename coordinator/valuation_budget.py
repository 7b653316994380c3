"""The coordinator's count of encrypted valuations per (consumer org, job) and UTC day, in its SQLite file.

A query is charged before the model is evaluated, in one BEGIN IMMEDIATE transaction that reads the counts,
checks them against the limits and adds one: two concurrent queries cannot both take the last one. A charged
query whose evaluation then fails stays counted (the inputs were checked before the charge, so that is an
internal fault, and counting it errs on the providers' side). The counts live in the coordinator's database,
so they survive a restart.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from coordinator.database import create_schema, reading, transaction
from policies.valuation_queries import ValuationLimits, next_reset, utc_day, valuation_budget_refusal

SCHEMA = """
CREATE TABLE IF NOT EXISTS valuation_queries (
    org TEXT NOT NULL,
    job_id TEXT NOT NULL,
    day TEXT NOT NULL,
    used INTEGER NOT NULL CHECK (used >= 0),
    PRIMARY KEY (org, job_id, day)
);
"""


class ValuationBudgetExhausted(Exception):
    """No valuation query is left for this org and job (today or at all); `reason` says which and when the
    daily count resets. `resets_at` is that time, or None when the total is spent (it never resets)."""

    def __init__(self, reason: str, resets_at: datetime | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.resets_at = resets_at


@dataclass(frozen=True)
class BudgetLeft:
    """What remains after the reading (or the charge): queries today and in total, and the next daily
    reset."""

    today: int
    total: int
    resets_at: datetime


class ValuationBudget:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        create_schema(self.path, SCHEMA)

    def charge(self, org: str, job_id: str, limits: ValuationLimits, *, now: datetime) -> BudgetLeft:
        """Count one valuation query of `org` on `job_id` at `now` (an aware time); returns what is left.

        Raises ValuationBudgetExhausted, counting nothing, when the total or today's count is spent.
        """
        day = utc_day(now)
        with transaction(self.path) as db:
            used_today, used_total = _used(db, org, job_id, day)
            _refuse_if_spent(limits, used_today, used_total, now)
            db.execute(
                "INSERT INTO valuation_queries (org, job_id, day, used) VALUES (?, ?, ?, 1) "
                "ON CONFLICT (org, job_id, day) DO UPDATE SET used = used + 1",
                (org, job_id, day),
            )
        today, total = limits.left(used_today + 1, used_total + 1)
        return BudgetLeft(today, total, next_reset(now))

    def require_left(self, org: str, job_id: str, limits: ValuationLimits, *, now: datetime) -> None:
        """Raise ValuationBudgetExhausted, as `charge` would, when `org` has no query left; charges nothing.
        A cheap early answer: only `charge` decides, atomically."""
        with reading(self.path) as db:
            used_today, used_total = _used(db, org, job_id, utc_day(now))
        _refuse_if_spent(limits, used_today, used_total, now)

    def left(self, org: str, job_id: str, limits: ValuationLimits, *, now: datetime) -> BudgetLeft:
        """What `org` has left on `job_id` at `now`, without charging anything."""
        with reading(self.path) as db:
            used_today, used_total = _used(db, org, job_id, utc_day(now))
        today, total = limits.left(used_today, used_total)
        return BudgetLeft(today, total, next_reset(now))


def _used(db: sqlite3.Connection, org: str, job_id: str, day: str) -> tuple[int, int]:
    row = db.execute(
        "SELECT COALESCE(SUM(CASE WHEN day = ?3 THEN used END), 0) AS today, COALESCE(SUM(used), 0) AS total "
        "FROM valuation_queries WHERE org = ?1 AND job_id = ?2",
        (org, job_id, day),
    ).fetchone()
    return int(row["today"]), int(row["total"])


def _refuse_if_spent(limits: ValuationLimits, used_today: int, used_total: int, now: datetime) -> None:
    refusal = valuation_budget_refusal(limits, used_today, used_total, now)
    if refusal is not None:
        daily = used_total < limits.total  # only today's count is spent: it resets at midnight
        raise ValuationBudgetExhausted(refusal, next_reset(now) if daily else None)

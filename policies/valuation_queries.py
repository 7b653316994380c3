"""Valuation-query budgets: how many encrypted valuations one consumer org may get from one job's model, per
UTC day and in total.

Why a budget at all: each answer is the model's value at a point the consumer chose (CKKS hides the point
from the coordinator, so nothing stops a consumer from sending any vector it likes, unclipped). The
valuation network has 1,249 parameters (21 -> 32 -> 16 -> 1), so an equation-solving extraction needs at
least that many answers; with the polynomial head the answers are exact values of a fixed polynomial, the
easiest case for such an attack. The defaults below keep a job left at them an order of magnitude under that
count while leaving room for a firm to value a small portfolio. They do not stop a consumer from fitting a
rough surrogate on the answers it is allowed: any service that answers at all gives that away, and the
providers consent to it by listing `valuate`.

The limit is the tightest across the job's agreements, each agreement's own limit or, where its offer says
nothing, the default: every provider whose rows trained the model is protected by its own terms.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from contracts.fields import utc_text
from contracts.offers import Constraints

DEFAULT_QUERIES_PER_DAY = 20
DEFAULT_QUERIES_TOTAL = 100


@dataclass(frozen=True)
class ValuationLimits:
    """The valuation queries one consumer org may make with one job's model, per UTC day and in total."""

    per_day: int
    total: int

    @classmethod
    def of(cls, constraints: Constraints) -> ValuationLimits:
        """One agreement's limits: its offer's own, or the defaults where it sets none."""
        return cls(
            per_day=constraints.valuation_queries_per_day or DEFAULT_QUERIES_PER_DAY,
            total=constraints.valuation_queries_total or DEFAULT_QUERIES_TOTAL,
        )

    @classmethod
    def tightest(cls, constraints: Iterable[Constraints]) -> ValuationLimits:
        """The smallest per-day and the smallest total limit across the agreements' constraints.

        Raises ValueError for no constraints at all (a job always trained under at least one agreement).
        """
        limits = [cls.of(item) for item in constraints]
        if not limits:
            raise ValueError("valuation limits need the constraints of at least one agreement")
        return cls(per_day=min(item.per_day for item in limits), total=min(item.total for item in limits))

    def left(self, used_today: int, used_total: int) -> tuple[int, int]:
        """The queries left (today, in total) after `used_today` and `used_total`; never below 0. Today's
        count cannot exceed what is left in total."""
        total_left = max(self.total - used_total, 0)
        return min(max(self.per_day - used_today, 0), total_left), total_left


def utc_day(now: datetime) -> str:
    """The UTC day `now` (an aware time) counts against, as YYYY-MM-DD."""
    return now.astimezone(UTC).date().isoformat()


def next_reset(now: datetime) -> datetime:
    """The next UTC midnight after `now`: when today's count starts again from 0."""
    tomorrow = now.astimezone(UTC).date() + timedelta(days=1)
    return datetime.combine(tomorrow, time(0), tzinfo=UTC)


def valuation_budget_refusal(
    limits: ValuationLimits, used_today: int, used_total: int, now: datetime
) -> str | None:
    """Why one more valuation query is refused (the total or today's count is spent, and when that changes),
    or None when it may be answered."""
    if used_total >= limits.total:
        return (
            f"all {limits.total} valuation queries this model allows your org in total are used; the total "
            "does not reset (only a new job under agreements with a higher valuation_queries_total would "
            "have more)"
        )
    if used_today >= limits.per_day:
        resets = next_reset(now)
        hours = (resets - now).total_seconds() / 3600
        return (
            f"all {limits.per_day} valuation queries this model allows your org per UTC day are used; the "
            f"count resets at {utc_text(resets)} (in {hours:.1f} h), with {limits.total - used_total} left "
            "in total"
        )
    return None

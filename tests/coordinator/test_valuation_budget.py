"""The valuation-query budget: the limits across a job's agreements (policies/valuation_queries.py) and the
coordinator's counts of them in SQLite (coordinator/valuation_budget.py), real files, real threads."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contracts.offers import Constraints
from coordinator.valuation_budget import ValuationBudget, ValuationBudgetExhausted
from policies.valuation_queries import (
    DEFAULT_QUERIES_PER_DAY,
    DEFAULT_QUERIES_TOTAL,
    ValuationLimits,
    next_reset,
)

NOON = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_the_tightest_agreement_holds_and_an_agreement_without_limits_brings_the_defaults() -> None:
    generous = Constraints(valuation_queries_per_day=1000, valuation_queries_total=5000)
    tight_total = Constraints(valuation_queries_per_day=500, valuation_queries_total=7)
    assert ValuationLimits.tightest([generous, tight_total]) == ValuationLimits(per_day=500, total=7)
    assert ValuationLimits.tightest([generous, Constraints()]) == ValuationLimits(
        per_day=DEFAULT_QUERIES_PER_DAY, total=DEFAULT_QUERIES_TOTAL
    )
    with pytest.raises(ValueError, match="at least one agreement"):
        ValuationLimits.tightest([])


def test_today_s_count_is_refused_until_utc_midnight_and_the_total_never_resets(tmp_path: Path) -> None:
    budget = ValuationBudget(tmp_path / "coordinator.db")
    limits = ValuationLimits(per_day=2, total=3)
    assert budget.charge("acme", "job-1", limits, now=NOON).today == 1
    assert budget.charge("acme", "job-1", limits, now=NOON).today == 0
    with pytest.raises(ValuationBudgetExhausted) as daily:
        budget.charge("acme", "job-1", limits, now=NOON)
    assert daily.value.resets_at == datetime(2026, 3, 2, tzinfo=UTC) == next_reset(NOON)
    assert "resets at 2026-03-02T00:00:00.000000Z (in 12.0 h), with 1 left in total" in daily.value.reason

    tomorrow = NOON + timedelta(days=1)
    left = budget.charge("acme", "job-1", limits, now=tomorrow)
    assert (left.today, left.total) == (0, 0)  # today's count is capped by what is left in total
    with pytest.raises(ValuationBudgetExhausted) as total:
        budget.charge("acme", "job-1", limits, now=tomorrow + timedelta(days=1))
    assert total.value.resets_at is None and "does not reset" in total.value.reason

    other = budget.left("globex", "job-1", limits, now=tomorrow)  # counted per org and job
    assert (other.today, other.total) == (2, 3)
    assert budget.left("acme", "job-2", limits, now=tomorrow).total == 3


def test_a_refused_charge_and_a_look_at_what_is_left_count_nothing(tmp_path: Path) -> None:
    budget = ValuationBudget(tmp_path / "coordinator.db")
    limits = ValuationLimits(per_day=1, total=1)
    budget.charge("acme", "job-1", limits, now=NOON)
    for _ in range(3):
        with pytest.raises(ValuationBudgetExhausted):
            budget.require_left("acme", "job-1", limits, now=NOON)
        with pytest.raises(ValuationBudgetExhausted):
            budget.charge("acme", "job-1", limits, now=NOON)
    bigger = ValuationLimits(per_day=5, total=5)
    assert (budget.left("acme", "job-1", bigger, now=NOON).total) == 4  # still exactly one used


def test_concurrent_queries_never_spend_more_than_the_total(tmp_path: Path) -> None:
    budget = ValuationBudget(tmp_path / "coordinator.db")
    limits = ValuationLimits(per_day=100, total=5)
    threads, start = 12, threading.Barrier(12, timeout=10)
    outcomes: list[str] = []
    lock = threading.Lock()

    def ask() -> None:
        start.wait()
        try:
            budget.charge("acme", "job-1", limits, now=NOON)
            result = "charged"
        except ValuationBudgetExhausted:
            result = "refused"
        with lock:
            outcomes.append(result)

    workers = [threading.Thread(target=ask) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert sorted(outcomes) == ["charged"] * 5 + ["refused"] * 7
    assert budget.left("acme", "job-1", limits, now=NOON).total == 0

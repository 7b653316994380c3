"""The per-agreement privacy ledger: Opacus's epsilon, budget checks before training, a lasting JSON form."""

from __future__ import annotations

import itertools
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opacus.accountants import RDPAccountant

from policies.privacy_accountant import (
    LedgerCorrupted,
    PrivacyBudgetExhausted,
    PrivacySpend,
    charge,
    check_budget,
    from_opacus_history,
    history_from_json,
    history_to_json,
    remaining_epsilon,
    spent_epsilon,
    to_opacus_history,
    would_exceed,
)

DELTA = 1e-5
# FIELD-NOTES: noise 1.0, batch 64 of 1,600 rows, 25 steps.
ONE_ROUND = PrivacySpend(noise_multiplier=1.0, sample_rate=64 / 1600, steps=25)


def _rounds(step: PrivacySpend, count: int) -> tuple[PrivacySpend, ...]:
    history: tuple[PrivacySpend, ...] = ()
    for _ in range(count):
        history = charge(history, step)
    return history


def _opacus_epsilon(steps: list[tuple[float, float]], delta: float) -> float:
    """What Opacus's own accountant reports when it sees the same optimizer steps one by one."""
    accountant = RDPAccountant()
    for noise_multiplier, sample_rate in steps:
        accountant.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate)
    return accountant.get_epsilon(delta=delta)


def test_the_field_notes_figures() -> None:
    one = spent_epsilon((ONE_ROUND,), DELTA)
    five = spent_epsilon(_rounds(ONE_ROUND, 5), DELTA)
    assert 1.5 < one < 3.0  # FIELD-NOTES measured 2.23
    assert 3.0 < five < 4.2  # FIELD-NOTES measured 3.56: RDP composition grows far slower than 5x
    assert five < 5 * one


def test_epsilon_equals_opacus_accountant_stepping_the_same_steps() -> None:
    schedule = [(1.0, 0.04)] * 25 + [(1.3, 0.1)] * 7 + [(1.0, 0.04)] * 3
    history: tuple[PrivacySpend, ...] = ()
    for noise_multiplier, sample_rate in schedule:
        history = charge(history, PrivacySpend(noise_multiplier, sample_rate, 1))
    assert len(history) == 3  # consecutive equal steps merge, as in Opacus
    for delta in (1e-5, 1e-3):
        assert spent_epsilon(history, delta) == pytest.approx(_opacus_epsilon(schedule, delta), rel=1e-12)


def test_epsilon_grows_with_the_steps() -> None:
    epsilons = [spent_epsilon((PrivacySpend(1.0, 0.04, steps),), DELTA) for steps in (1, 5, 25, 125, 625)]
    assert epsilons[0] > 0
    assert all(a < b for a, b in itertools.pairwise(epsilons))


# The first epsilon of each (noise, sample rate) takes 10-400 ms (Opacus evaluates ~150 RDP orders).
@settings(max_examples=6)
@given(
    noise=st.floats(min_value=0.7, max_value=3.0),
    sample_rate=st.floats(min_value=0.01, max_value=0.2),
    steps=st.integers(min_value=1, max_value=300),
)
def test_one_more_step_always_costs_more(noise: float, sample_rate: float, steps: int) -> None:
    spend = PrivacySpend(noise, sample_rate, steps)
    before = spent_epsilon((spend,), DELTA)
    after = spent_epsilon(charge((spend,), PrivacySpend(noise, sample_rate, 1)), DELTA)
    assert 0 < before < after < math.inf


def test_an_empty_ledger_has_spent_nothing_and_noiseless_steps_spend_everything() -> None:
    assert spent_epsilon((), DELTA) == 0.0
    assert remaining_epsilon((), DELTA, 3.0) == 3.0
    noiseless = PrivacySpend(0.0, 0.04, 1)
    assert spent_epsilon((ONE_ROUND, noiseless), DELTA) == math.inf
    assert would_exceed((), noiseless, DELTA, 1e6) == (True, math.inf)


def test_charge_merges_only_equal_consecutive_steps_and_never_mutates() -> None:
    other = PrivacySpend(1.3, 0.04, 10)
    history = (ONE_ROUND,)
    merged = charge(history, ONE_ROUND)
    assert history == (ONE_ROUND,)
    assert merged == (PrivacySpend(1.0, 0.04, 50),)
    assert charge(merged, other) == (PrivacySpend(1.0, 0.04, 50), other)
    assert charge((*merged, other), ONE_ROUND) == (PrivacySpend(1.0, 0.04, 50), other, ONE_ROUND)


def test_would_exceed_checks_the_planned_step_before_it_is_charged() -> None:
    four = _rounds(ONE_ROUND, 4)
    five_epsilon = spent_epsilon(_rounds(ONE_ROUND, 5), DELTA)

    exceeds, epsilon_after = would_exceed(four, ONE_ROUND, DELTA, five_epsilon - 1e-6)
    assert exceeds
    assert epsilon_after == five_epsilon
    # Reaching the budget exactly is allowed.
    assert would_exceed(four, ONE_ROUND, DELTA, five_epsilon) == (False, five_epsilon)
    assert would_exceed(four, PrivacySpend(1.0, 0.04, 1), DELTA, five_epsilon - 1e-6)[0] is False


def test_check_budget_explains_what_remains() -> None:
    four = _rounds(ONE_ROUND, 4)
    spent = spent_epsilon(four, DELTA)
    budget = spent + 0.1  # less than one round costs
    with pytest.raises(PrivacyBudgetExhausted) as refused:
        check_budget(four, ONE_ROUND, delta=DELTA, epsilon_budget=budget)
    assert refused.value.remaining == pytest.approx(0.1)
    assert refused.value.epsilon_spent == spent
    assert "0.1 remains" in str(refused.value)
    assert f"{budget:.4g}" in str(refused.value)
    assert check_budget(four, ONE_ROUND, delta=DELTA, epsilon_budget=10.0) == spent_epsilon(
        charge(four, ONE_ROUND), DELTA
    )
    assert remaining_epsilon(four, DELTA, budget) == pytest.approx(0.1)
    assert remaining_epsilon(_rounds(ONE_ROUND, 9), DELTA, budget) == 0.0


@pytest.mark.parametrize("delta", [0, 1, -1e-5, math.nan, True])
def test_a_meaningless_delta_is_refused(delta: float) -> None:
    with pytest.raises(ValueError, match="delta"):
        spent_epsilon((ONE_ROUND,), delta)


@pytest.mark.parametrize("budget", [0, -1.0, math.inf, math.nan])
def test_a_meaningless_budget_is_refused(budget: float) -> None:
    with pytest.raises(ValueError, match="epsilon budget"):
        would_exceed((), ONE_ROUND, DELTA, budget)


@pytest.mark.parametrize(
    ("noise", "rate", "steps"),
    [(-0.1, 0.1, 1), (math.nan, 0.1, 1), (math.inf, 0.1, 1), (1.0, 0.0, 1), (1.0, 1.5, 1), (1.0, 0.1, 0),
     (1.0, 0.1, 2.0), (1.0, 0.1, True), ("1", 0.1, 1)],
)  # fmt: skip
def test_a_spend_outside_its_ranges_is_refused(noise: float, rate: float, steps: int) -> None:
    with pytest.raises(ValueError):
        PrivacySpend(noise, rate, steps)


def test_the_opacus_history_format_converts_both_ways() -> None:
    accountant = RDPAccountant()
    for _ in range(3):
        accountant.step(noise_multiplier=1.1, sample_rate=0.05)
    accountant.step(noise_multiplier=0.9, sample_rate=0.05)
    history = from_opacus_history(accountant.history)
    assert history == (PrivacySpend(1.1, 0.05, 3), PrivacySpend(0.9, 0.05, 1))
    assert to_opacus_history(history) == accountant.history


def test_the_json_ledger_round_trips_exactly() -> None:
    history = (PrivacySpend(1.0, 1 / 3, 125), PrivacySpend(0.7071067811865476, 0.0123456789, 7))
    text = history_to_json(history)
    assert history_from_json(text) == history
    assert history_from_json(text.encode()) == history
    assert spent_epsilon(history_from_json(text), DELTA) == spent_epsilon(history, DELTA)
    assert history_from_json(history_to_json(())) == ()
    assert json.loads(text) == {
        "mechanism": "rdp",
        "history": [
            {"noise_multiplier": 1.0, "sample_rate": 1 / 3, "steps": 125},
            {"noise_multiplier": 0.7071067811865476, "sample_rate": 0.0123456789, "steps": 7},
        ],
    }
    assert " " not in text  # canonical: sorted keys, no spaces, so equal ledgers store equal bytes
    assert text == history_to_json(history_from_json(text))


def _entry(**changes: object) -> str:
    entry = {"noise_multiplier": 1.0, "sample_rate": 0.04, "steps": 25, **changes}
    return json.dumps({"mechanism": "rdp", "history": [entry]})


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "[]",
        '{"mechanism": "rdp"}',
        '{"mechanism": "prv", "history": []}',
        '{"mechanism": "rdp", "history": {}}',
        '{"mechanism": "rdp", "history": [], "spent": 0}',
        '{"mechanism": "rdp", "history": [{"noise_multiplier": NaN, "sample_rate": 0.04, "steps": 25}]}',
        '{"mechanism": "rdp", "history": [{"noise_multiplier": 1.0, "sample_rate": Infinity, "steps": 1}]}',
        '{"mechanism": "rdp", "history": [[1.0, 0.04, 25]]}',
        _entry(steps=25.0),
        _entry(steps=0),
        _entry(steps=True),
        _entry(steps="25"),
        _entry(noise_multiplier=-1.0),
        _entry(noise_multiplier="1.0"),
        _entry(sample_rate=1.5),
        _entry(sample_rate=None),
        _entry(epsilon=0.0),
    ],
)
def test_a_corrupted_ledger_is_refused_never_read_as_empty(text: str) -> None:
    with pytest.raises(LedgerCorrupted):
        history_from_json(text)


def test_the_valid_template_of_the_corruption_cases_is_accepted() -> None:
    assert history_from_json(_entry()) == (ONE_ROUND,)

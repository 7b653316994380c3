"""Noise calibration: the returned noise, fed back to the node's own ledger, fits the budget and barely."""

from __future__ import annotations

import math

import pytest
from opacus.accountants import RDPAccountant

from node.training.calibration import noise_for_budget, noise_for_job
from node.training.dp_step import poisson_sample_rate
from policies.privacy_accountant import (
    PrivacyBudgetExhausted,
    PrivacySpend,
    charge,
    check_budget,
    spent_epsilon,
)

# Opacus notes, for large budgets, that RDP orders beyond its default range would give a tighter bound; the
# node's ledger uses the same default orders, so the calibration is consistent with it either way.
pytestmark = pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha:UserWarning")

DELTA = 1e-5
TOLERANCE = 0.01  # the calibration leaves at most this much of the budget unused (1% for epsilon >= 1)


def ledger_epsilon(noise: float, sample_rate: float, steps: int) -> float:
    return spent_epsilon((PrivacySpend(noise, sample_rate, steps),), DELTA)


@pytest.mark.parametrize(
    ("epsilon", "sample_rate", "steps"),
    [(1.0, 1 / 3, 400), (4.0, 1 / 5, 400), (8.0, 1 / 12, 400), (8.0, 0.01, 5000)],
)
def test_the_noise_spends_at_most_the_budget_and_little_less(
    epsilon: float, sample_rate: float, steps: int
) -> None:
    noise = noise_for_budget(epsilon=epsilon, delta=DELTA, sample_rate=sample_rate, steps=steps)
    reached = ledger_epsilon(noise, sample_rate, steps)
    assert epsilon - TOLERANCE <= reached <= epsilon
    # The smallest such noise: 3% less (epsilon grows about as 1/noise) goes past the budget.
    assert ledger_epsilon(noise * 0.97, sample_rate, steps) > epsilon


def test_it_agrees_with_the_field_notes_measurement() -> None:
    # FIELD-NOTES: noise 1.0, batch 64 of 1,600 rows, 25 steps gives epsilon 2.23 with Opacus's accountant.
    accountant = RDPAccountant()
    accountant.history = [(1.0, 64 / 1600, 25)]
    epsilon = accountant.get_epsilon(delta=DELTA)
    assert epsilon == pytest.approx(2.23, abs=0.01)
    assert noise_for_budget(epsilon=epsilon, delta=DELTA, sample_rate=64 / 1600, steps=25) == pytest.approx(
        1.0, rel=0.02
    )


def test_more_rows_or_fewer_steps_or_more_epsilon_need_less_noise() -> None:
    base = noise_for_budget(epsilon=4.0, delta=DELTA, sample_rate=1 / 5, steps=400)
    assert noise_for_budget(epsilon=4.0, delta=DELTA, sample_rate=1 / 12, steps=400) < base
    assert noise_for_budget(epsilon=4.0, delta=DELTA, sample_rate=1 / 5, steps=100) < base
    assert noise_for_budget(epsilon=8.0, delta=DELTA, sample_rate=1 / 5, steps=400) < base


def test_a_job_charged_round_by_round_ends_within_its_epsilon() -> None:
    # A node with 731 rows (provider-apac's train share) in a 20-round job of 20 local steps of batch 256.
    rows, batch, rounds, local_steps, epsilon = 731, 256, 20, 20, 8.0
    noise = noise_for_job(
        epsilon=epsilon,
        delta=DELTA,
        num_examples=rows,
        batch_size=batch,
        rounds=rounds,
        local_steps=local_steps,
    )
    rate = poisson_sample_rate(rows, batch)
    assert noise == noise_for_budget(
        epsilon=epsilon, delta=DELTA, sample_rate=rate, steps=rounds * local_steps
    )
    history: tuple[PrivacySpend, ...] = ()
    for _round in range(rounds):  # the budget check the node runs before each round never refuses
        step = PrivacySpend(noise, rate, local_steps)
        check_budget(history, step, delta=DELTA, epsilon_budget=epsilon)
        history = charge(history, step)
    assert epsilon - TOLERANCE <= spent_epsilon(history, DELTA) <= epsilon
    with pytest.raises(PrivacyBudgetExhausted):  # one round more would not fit
        check_budget(history, PrivacySpend(noise, rate, local_steps), delta=DELTA, epsilon_budget=epsilon)


def test_results_are_cached() -> None:
    first = noise_for_budget(epsilon=2.0, delta=DELTA, sample_rate=0.1, steps=50)
    assert (
        noise_for_budget(epsilon=2, delta=DELTA, sample_rate=0.1, steps=50) == first
    )  # int epsilon, same key


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ({"epsilon": 0.0}, "epsilon"),
        ({"epsilon": -1.0}, "epsilon"),
        ({"epsilon": math.inf}, "epsilon"),
        ({"epsilon": math.nan}, "epsilon"),
        ({"delta": 0.0}, "delta"),
        ({"delta": 1.0}, "delta"),
        ({"sample_rate": 0.0}, "sample_rate"),
        ({"sample_rate": 1.5}, "sample_rate"),
        ({"steps": 0}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"steps": True}, "steps"),
        ({"epsilon": 0.05, "sample_rate": 1.0}, "budget is too small"),  # below what any noise reaches
    ],
)
def test_bad_inputs_are_refused_with_a_reason(arguments: dict, reason: str) -> None:
    values = {"epsilon": 4.0, "delta": DELTA, "sample_rate": 0.1, "steps": 100, **arguments}
    with pytest.raises(ValueError, match=reason):
        noise_for_budget(**values)


@pytest.mark.parametrize(("rounds", "local_steps"), [(0, 10), (10, 0), (1.5, 10)])
def test_a_job_without_rounds_or_steps_is_refused(rounds: object, local_steps: object) -> None:
    with pytest.raises(ValueError, match=r"rounds|local_steps"):
        noise_for_job(
            epsilon=4.0, delta=DELTA, num_examples=100, batch_size=10, rounds=rounds, local_steps=local_steps
        )

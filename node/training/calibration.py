"""How much noise a node adds so that its whole participation in a training job fits the job's epsilon.

A job grants one epsilon (at one delta) for R rounds of S local DP-SGD steps each. The node, not the
coordinator, turns that into a noise multiplier: it knows how many rows it trains on, hence its Poisson
sample rate (`dp_step.poisson_sample_rate`), and it alone answers for its ledger. A node with fewer rows
samples each row more often and so needs more noise for the same epsilon.

`noise_for_budget` searches with Opacus's own `get_noise_multiplier` and the RDP accountant, then checks the
answer with this node's ledger arithmetic (`accountant.spent_epsilon`, the number the node enforces), so a
node that trains R x S steps at the returned noise is never refused by its own budget check for this job.
The calibration assumes the job starts from an empty ledger for its epsilon: RDP adds per order, not per
epsilon, so a ledger that already holds spends needs its remaining budget computed against that history.
"""

from __future__ import annotations

import math
from functools import lru_cache

from opacus.accountants.utils import get_noise_multiplier

from node.training.dp_step import poisson_sample_rate
from policies.privacy_accountant import MECHANISM, PrivacySpend, spent_epsilon

__all__ = ["noise_for_budget", "noise_for_job"]

# Opacus's search stops once the epsilon reached is within this of the target: at most 1% of the budget
# (never more than 0.01) is left unused, at the price of a few more RDP evaluations (well under 1 s).
_RELATIVE_TOLERANCE = 0.01
_ABSOLUTE_TOLERANCE = 0.01


def noise_for_budget(*, epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    """The smallest noise multiplier (to Opacus's search tolerance) whose epsilon over `steps` is <= epsilon.

    Guarantees: `spent_epsilon((PrivacySpend(noise, sample_rate, steps),), delta) <= epsilon` for the
    returned noise, as the node's ledger computes it. Results are cached per argument set.
    Raises ValueError for an epsilon that is not a positive finite number, a delta outside (0, 1), a sample
    rate outside (0, 1], a step count that is not a positive int, or a budget so small that no usable noise
    reaches it; RuntimeError if Opacus's answer does not fit the ledger's own arithmetic (then no noise is
    returned rather than one that would overspend).
    """
    _require(
        _is_number(epsilon) and 0 < epsilon < math.inf, f"epsilon must be > 0 and finite, got {epsilon!r}"
    )
    _require(_is_number(delta) and 0 < delta < 1, f"delta must be in (0, 1), got {delta!r}")
    _require(
        _is_number(sample_rate) and 0 < sample_rate <= 1,
        f"sample_rate must be in (0, 1], got {sample_rate!r}",
    )
    _require(
        not isinstance(steps, bool) and isinstance(steps, int) and steps > 0,
        f"steps must be a positive integer, got {steps!r}",
    )
    return _calibrated(float(epsilon), float(delta), float(sample_rate), steps)


def noise_for_job(
    *, epsilon: float, delta: float, num_examples: int, batch_size: int, rounds: int, local_steps: int
) -> float:
    """The noise for a node that trains `rounds` x `local_steps` steps on `num_examples` rows in batches.

    The sample rate is the one `local_dp_step` will use and record (`poisson_sample_rate`). Raises ValueError
    as `noise_for_budget` and `poisson_sample_rate` do, and for rounds or local steps that are not positive
    ints.
    """
    for name, value in (("rounds", rounds), ("local_steps", local_steps)):
        _require(
            not isinstance(value, bool) and isinstance(value, int) and value > 0,
            f"{name} must be a positive integer, got {value!r}",
        )
    return noise_for_budget(
        epsilon=epsilon,
        delta=delta,
        sample_rate=poisson_sample_rate(num_examples, batch_size),
        steps=rounds * local_steps,
    )


@lru_cache(maxsize=256)
def _calibrated(epsilon: float, delta: float, sample_rate: float, steps: int) -> float:
    try:
        noise = get_noise_multiplier(
            target_epsilon=epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=steps,
            accountant=MECHANISM,
            epsilon_tolerance=min(_ABSOLUTE_TOLERANCE, _RELATIVE_TOLERANCE * epsilon),
        )
    except ValueError as error:  # Opacus: "The privacy budget is too low."
        raise ValueError(
            f"no noise multiplier keeps {steps} steps at sample rate {sample_rate:.4g} within epsilon "
            f"{epsilon:g} (delta {delta:g}): the budget is too small for this job; ask for fewer rounds or "
            "local steps, or a larger epsilon"
        ) from error
    reached = spent_epsilon((PrivacySpend(float(noise), sample_rate, steps),), delta)
    if not reached <= epsilon:
        raise RuntimeError(
            f"Opacus calibrated noise {noise:.6g} for epsilon {epsilon:g}, but the ledger computes "
            f"{reached:.6g} for it; refusing a noise that would overspend the budget"
        )
    return float(noise)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)

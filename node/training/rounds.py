"""One federated round at a node: plan its privacy spend, train, or evaluate, on the node's prepared data.

The node, not the job, chooses the noise: from the epsilon the consumer granted the job, the job's rounds and
local steps, and the node's own row count, it takes the smallest noise multiplier whose spend over the whole
job stays within that epsilon (`calibration.noise_for_budget`). The plan also states the agreement's epsilon
after this round, computed from its stored ledger, and refuses (PrivacyBudgetExhausted) a round that would go
past the agreement's budget, before any training runs.

Imports torch and Opacus: import this module only where a round runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from contracts.job_grants import TrainingSettings
from models.valuation.quality import ErrorSums, spearman
from node.training.calibration import noise_for_budget
from node.training.data import PreparedData
from node.training.dp_step import DPConfig, LocalUpdate, local_dp_step, poisson_sample_rate
from node.training.ledger import REPORTING_DELTA
from node.training.trainable import TrainableModel
from policies.privacy_accountant import (
    PrivacySpend,
    charge,
    check_budget,
    history_from_json,
    spent_epsilon,
)
from policies.spend_record import NOISE_UNITS


@dataclass(frozen=True)
class RoundPlan:
    spend: PrivacySpend
    epsilon_after: float  # the agreement's total once this round is charged (inf without noise)
    delta: float
    planned_on: str | None  # the ledger JSON the plan was made against (None: no ledger yet)


def plan_round(
    *,
    num_examples: int,
    settings: TrainingSettings,
    rounds: int,
    job_epsilon: float | None,
    epsilon_budget: float | None,
    delta: float | None,
    ledger_json: str | None,
) -> RoundPlan:
    """The spend of one round and the agreement's epsilon after it.

    Raises PrivacyBudgetExhausted (its message says what remains) when the round would take the agreement
    past `epsilon_budget`, LedgerCorrupted for a stored ledger that cannot be read, ValueError for values
    outside their ranges.
    """
    at_delta = delta if delta is not None else REPORTING_DELTA
    sample_rate = poisson_sample_rate(num_examples, settings.batch_size)
    noise = 0.0
    if job_epsilon is not None:
        calibrated = noise_for_budget(
            epsilon=job_epsilon, delta=at_delta, sample_rate=sample_rate, steps=rounds * settings.local_steps
        )
        # Rounded up to a whole micro-unit, so the audit entry states it exactly as an integer (more noise
        # only lowers the spend).
        noise = math.ceil(calibrated * NOISE_UNITS) / NOISE_UNITS
    spend = PrivacySpend(noise_multiplier=noise, sample_rate=sample_rate, steps=settings.local_steps)
    history = history_from_json(ledger_json) if ledger_json is not None else ()
    if epsilon_budget is None:
        epsilon_after = spent_epsilon(charge(history, spend), at_delta)
    else:
        epsilon_after = check_budget(history, spend, delta=at_delta, epsilon_budget=epsilon_budget)
    return RoundPlan(spend=spend, epsilon_after=epsilon_after, delta=at_delta, planned_on=ledger_json)


def train_round(
    model: TrainableModel,
    data: PreparedData,
    weights: list[np.ndarray],
    settings: TrainingSettings,
    plan: RoundPlan,
) -> LocalUpdate:
    """The local DP-SGD step on the node's training examples, with the plan's noise (seeded by the OS)."""
    config = DPConfig(
        noise_multiplier=plan.spend.noise_multiplier,
        max_grad_norm=settings.max_grad_norm,
        learning_rate=settings.learning_rate,
        batch_size=settings.batch_size,
        steps=settings.local_steps,
        optimizer=settings.optimizer,
    )
    update = local_dp_step(weights, data.train_features, data.train_targets, config=config, model=model)
    if update.spend != plan.spend:  # local_dp_step checks Opacus against its own plan; this is ours
        raise RuntimeError(f"the step spent {update.spend}, not the planned {plan.spend}")
    return update


def evaluate_round(
    model: TrainableModel, data: PreparedData, weights: list[np.ndarray]
) -> tuple[ErrorSums, float]:
    """Error and correlation sums, and Spearman's rank correlation, of `weights` on the node's held-out
    examples. Raises ValueError for weights that are not the model's."""
    module = model.module_from_weights(model.check_weights(weights))
    module.eval()
    with torch.no_grad():
        inputs = torch.from_numpy(data.held_out_features)
        predicted = model.predict(module, inputs).numpy().astype(np.float64)
    actual = data.held_out_targets.astype(np.float64)
    sums = ErrorSums.of(predicted, actual)
    rank_correlation = spearman(predicted, actual) if len(actual) >= 2 else math.nan
    return sums, rank_correlation if math.isfinite(rank_correlation) else 0.0

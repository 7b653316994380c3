"""The local DP-SGD step on real Lens rows: shapes, learning, clipping, noise, determinism, and the ledger."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from models.valuation.features import feature_matrix
from models.valuation.network import get_weights, model_from_weights, new_model, weight_shapes
from models.valuation.target import cohort_stats, normalised_targets
from node.partition import read_rows
from node.training import dp_step
from node.training.dp_step import DPConfig, LocalUpdate, local_dp_step, planned_spend, poisson_sample_rate
from policies.privacy_accountant import PrivacySpend, charge, spent_epsilon, would_exceed

# Opacus warns once per engine that torchcsprng is absent (see dp_step's docstring), and torch warns on
# every step that the inputs need no gradient; neither is what these tests check.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Secure RNG turned off:UserWarning"),
    pytest.mark.filterwarnings("ignore:Full backward hook is firing:UserWarning"),
]

LENS_SAMPLE = Path(__file__).resolve().parents[2] / "data" / "lens_drone_families.csv.gz"
NODE_ROWS = 320  # one node's share; batch 32 then samples at rate 0.1
DELTA = 1e-5
FAST = DPConfig(noise_multiplier=1.0, max_grad_norm=1.0, learning_rate=0.1, batch_size=32, steps=5)
Data = tuple[np.ndarray, np.ndarray]


@pytest.fixture(scope="module")
def data() -> Data:
    rows = read_rows(LENS_SAMPLE)[1]
    node_rows = rows[:NODE_ROWS]
    # Targets against the cohort stats of all rows, as a node gets them after the stats are aggregated.
    targets = normalised_targets(node_rows, cohort_stats(rows))
    return feature_matrix(node_rows, reference_year=2017), targets


@pytest.fixture(scope="module")
def start() -> list[np.ndarray]:
    return get_weights(new_model(0))


def _mse(weights: list[np.ndarray], data: Data) -> float:
    features, targets = data
    with torch.no_grad():
        predictions = model_from_weights(weights)(torch.from_numpy(features)).squeeze(-1).numpy()
    return float(np.mean((predictions - targets) ** 2))


def _apply(start: list[np.ndarray], update: LocalUpdate) -> list[np.ndarray]:
    return [base + delta for base, delta in zip(start, update.weights_delta, strict=True)]


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_the_update_is_a_float32_delta_in_the_wire_format(data: Data, start: list[np.ndarray]) -> None:
    update = local_dp_step(start, *data, config=FAST, seed=1)
    assert [array.shape for array in update.weights_delta] == weight_shapes()
    assert all(array.dtype == np.float32 for array in update.weights_delta)
    assert any(np.abs(array).max() > 0 for array in update.weights_delta)
    assert update.num_examples == NODE_ROWS
    assert math.isfinite(update.train_loss)
    # Nothing else leaves: a new field must be reviewed for what it reveals about the rows.
    assert {field.name for field in dataclasses.fields(LocalUpdate)} == {
        "weights_delta",
        "num_examples",
        "spend",
        "train_loss",
    }


def test_without_noise_a_few_steps_reduce_the_training_loss(data: Data, start: list[np.ndarray]) -> None:
    update = local_dp_step(start, *data, config=dataclasses.replace(FAST, noise_multiplier=0.0), seed=1)
    assert _mse(_apply(start, update), data) < 0.8 * _mse(start, data)


def test_with_noise_the_update_stays_finite_and_still_learns(data: Data, start: list[np.ndarray]) -> None:
    update = local_dp_step(start, *data, config=FAST, seed=1)
    assert all(np.isfinite(array).all() for array in update.weights_delta)
    assert _mse(_apply(start, update), data) < _mse(start, data)


def test_noise_is_added_at_the_configured_scale(data: Data, start: list[np.ndarray]) -> None:
    noisy = local_dp_step(start, *data, config=FAST, seed=1)
    clean = local_dp_step(start, *data, config=dataclasses.replace(FAST, noise_multiplier=0.0), seed=1)
    pairs = zip(noisy.weights_delta, clean.weights_delta, strict=True)
    difference = np.concatenate([(a - b).ravel() for a, b in pairs])
    # Same batches, so the difference is mostly the noise: lr * sigma * C / expected batch per step.
    per_step = FAST.learning_rate * FAST.noise_multiplier * FAST.max_grad_norm / FAST.batch_size
    expected = per_step * math.sqrt(FAST.steps)
    assert 0.5 * expected < difference.std() < 2 * expected


def test_clipping_bounds_each_step_whatever_the_targets(data: Data, start: list[np.ndarray]) -> None:
    features, targets = data
    # All rows in one batch (sample rate 1), one step, no noise: the update is lr x the mean clipped gradient.
    config = DPConfig(noise_multiplier=0, max_grad_norm=0.5, learning_rate=0.1, batch_size=NODE_ROWS, steps=1)
    update = local_dp_step(start, features, targets * 1e4, config=config, seed=2)
    norm = math.sqrt(sum(float(np.sum(array.astype(np.float64) ** 2)) for array in update.weights_delta))
    assert 0 < norm <= config.learning_rate * config.max_grad_norm * (1 + 1e-5)
    assert update.spend == PrivacySpend(0.0, 1.0, 1)


def test_the_same_seed_gives_the_same_update_and_another_seed_another(
    data: Data, start: list[np.ndarray]
) -> None:
    first = local_dp_step(start, *data, config=FAST, seed=7)
    again = local_dp_step(start, *data, config=FAST, seed=7)
    other = local_dp_step(start, *data, config=FAST, seed=8)
    unseeded = local_dp_step(start, *data, config=FAST)
    assert _same(first.weights_delta, again.weights_delta)
    assert first.train_loss == again.train_loss
    assert not _same(first.weights_delta, other.weights_delta)
    assert not _same(first.weights_delta, unseeded.weights_delta)


def test_the_spend_is_the_configured_one_as_opacus_recorded_it(data: Data, start: list[np.ndarray]) -> None:
    update = local_dp_step(start, *data, config=FAST, seed=1)
    assert update.spend == PrivacySpend(1.0, FAST.batch_size / NODE_ROWS, FAST.steps)
    assert update.spend == planned_spend(NODE_ROWS, FAST)


def test_the_sample_rate_follows_opacus_rule() -> None:
    assert poisson_sample_rate(1600, 64) == 64 / 1600
    assert poisson_sample_rate(300, 64) == 1 / 5  # 1 / ceil(300 / 64), not 64 / 300
    assert poisson_sample_rate(10, 64) == 1.0


def test_a_recorded_spend_that_differs_from_the_plan_withholds_the_update(
    data: Data, start: list[np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_train = dp_step._train

    def one_step_more(*args: Any, **kwargs: Any) -> tuple[Any, float, list[tuple[float, float, int]]]:
        weights, loss, history = real_train(*args, **kwargs)
        ((noise, rate, steps),) = history
        return weights, loss, [(noise, rate, steps + 1)]

    monkeypatch.setattr(dp_step, "_train", one_step_more)
    with pytest.raises(RuntimeError, match="withheld"):
        local_dp_step(start, *data, config=FAST, seed=1)


def test_epsilon_grows_with_every_call_and_the_next_overspend_is_caught_before_training(
    data: Data, start: list[np.ndarray]
) -> None:
    history: tuple[PrivacySpend, ...] = ()
    epsilons = []
    weights = start
    for round_number in range(3):
        update = local_dp_step(weights, *data, config=FAST, seed=round_number)
        history = charge(history, update.spend)
        epsilons.append(spent_epsilon(history, DELTA))
        weights = _apply(weights, update)
    assert 0 < epsilons[0] < epsilons[1] < epsilons[2]

    budget = epsilons[-1] + 0.01  # less than one more call costs
    exceeds, epsilon_after = would_exceed(history, planned_spend(NODE_ROWS, FAST), DELTA, budget)
    assert exceeds
    assert epsilon_after > budget
    # A smaller step still fits.
    one_step = planned_spend(NODE_ROWS, dataclasses.replace(FAST, steps=1))
    assert not would_exceed(history, one_step, DELTA, 10.0)[0]


def test_torch_threads_are_restored(data: Data, start: list[np.ndarray]) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        local_dp_step(start, *data, config=dataclasses.replace(FAST, steps=1), seed=1)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_malformed_inputs_are_refused(data: Data, start: list[np.ndarray]) -> None:
    features, targets = data
    with_nan = targets.copy()
    with_nan[3] = np.nan
    cases = [
        (start, features[:, :-1], targets, "features must have shape"),
        (start, features, targets[:-1], "targets must have shape"),
        (start, features[:0], targets[:0], "no rows"),
        (start, features, with_nan, "NaN"),
        (start[:-1], features, targets, "weight arrays"),
    ]
    for weights, x, y, reason in cases:
        with pytest.raises(ValueError, match=reason):
            local_dp_step(weights, x, y, config=FAST, seed=1)


@pytest.mark.parametrize(
    "changes",
    [
        {"noise_multiplier": -1.0},
        {"noise_multiplier": math.nan},
        {"max_grad_norm": 0.0},
        {"learning_rate": math.inf},
        {"batch_size": 0},
        {"steps": 0},
        {"steps": 2.5},
    ],
)
def test_a_config_outside_its_ranges_is_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(FAST, **changes)


def test_empty_poisson_batches_are_survived(data: Data, start: list[np.ndarray]) -> None:
    features, targets = data
    # Three rows sampled at rate 1/3: about 30% of the 12 batches are empty.
    config = dataclasses.replace(FAST, batch_size=1, steps=12)
    update = local_dp_step(start, features[:3], targets[:3], config=config, seed=3)
    assert all(np.isfinite(array).all() for array in update.weights_delta)
    assert math.isfinite(update.train_loss)
    assert update.spend == PrivacySpend(1.0, 1 / 3, 12)


def test_adam_on_the_privatised_gradients_learns_and_spends_what_sgd_spends(
    data: Data, start: list[np.ndarray]
) -> None:
    adam = DPConfig(
        noise_multiplier=0.5, max_grad_norm=1.0, learning_rate=0.01, batch_size=32, steps=20, optimizer="adam"
    )
    update = local_dp_step(start, *data, config=adam, seed=3)
    assert (
        update.spend
        == planned_spend(NODE_ROWS, adam)
        == planned_spend(NODE_ROWS, dataclasses.replace(adam, optimizer="sgd"))
    )
    assert _mse(_apply(start, update), data) < _mse(start, data)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        dataclasses.replace(adam, optimizer="lbfgs")

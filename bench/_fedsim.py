"""An in-process FedAvg over the real node step: what a federated training job computes, without Flower.

Each round mirrors the deployed protocol: every provider runs `node.training.dp_step.local_dp_step` on its
own training rows from the global weights (as the node's Train RPC does), with the noise the node would
calibrate for itself from the job's epsilon (`node.training.calibration.noise_for_job`), and returns a delta;
the server averages the deltas weighted by `num_examples` (Flower's FedAvg) and adds them to the global
weights. Each node's spend is charged to its own ledger (`accountant.charge`) and the run fails if any node
would end past the job's epsilon. Without DP the nodes run the same step with noise multiplier 0: per-example
clipping stays, only the noise is gone (what a node does for a job granted no epsilon).

The model is the job's task's (`node.training.trainable`): the valuation network by default, or the matching
head (`model=MATCHING`, started from the given weights, as its job starts from `projection.initial_weights`).

Not simulated: transport, SecAgg+'s quantisation of the summed updates (model error <= 3e-4 after 5 rounds,
FIELD-NOTES), and node failures. Seeds make a run repeatable; a real node draws its seed from the OS.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from bench import BenchFailed
from models.valuation.network import get_weights, model_from_weights, new_model
from node.training.calibration import noise_for_job
from node.training.dp_step import DPConfig, local_dp_step
from node.training.trainable import VALUATION, TrainableModel
from policies.privacy_accountant import History, charge, spent_epsilon

DELTA = 1e-5

# Opacus warns that torchcsprng is absent (dp_step's docstring says why) and torch that the inputs need no
# gradient; both on every step, and neither changes what is measured.
warnings.filterwarnings("ignore", message="Secure RNG turned off")
warnings.filterwarnings("ignore", message="Full backward hook is firing")
# Opacus, when calibrating a large epsilon: a wider range of RDP orders would give a slightly tighter bound.
# The node's ledger uses the same orders, so the noise is what the node would pick.
warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")


@dataclass(frozen=True)
class FedSettings:
    """The job's model settings (the job spec's `model` block) and its number of rounds."""

    rounds: int
    local_steps: int
    batch_size: int
    learning_rate: float
    max_grad_norm: float
    optimizer: str = "sgd"

    def label(self) -> str:
        return (
            f"rounds={self.rounds} local_steps={self.local_steps} batch_size={self.batch_size} "
            f"learning_rate={self.learning_rate:g} max_grad_norm={self.max_grad_norm:g} "
            f"optimizer={self.optimizer}"
        )


@dataclass(frozen=True)
class NodeShard:
    """One provider's training rows, as its node prepares them (features, targets float32)."""

    provider: str
    features: np.ndarray
    targets: np.ndarray


@dataclass(frozen=True)
class FedRun:
    """A finished run: the global weights, each node's noise and epsilon, and every local step's time."""

    weights: list[np.ndarray]
    noise_by_node: dict[str, float]
    epsilon_by_node: dict[str, float]
    step_seconds: list[float]


def run_fedavg(
    shards: Sequence[NodeShard],
    settings: FedSettings,
    *,
    epsilon: float | None,
    seed: int,
    model: TrainableModel = VALUATION,
    start: Sequence[np.ndarray] | None = None,
    after_round: Callable[[int, list[np.ndarray]], None] | None = None,
) -> FedRun:
    """FedAvg of `model` for `settings.rounds` rounds from `start` (default: the valuation network's
    `new_model(seed)`); `epsilon` None trains without noise. `after_round(round_number, weights)`, if given,
    sees the global weights after every round (from 1).

    Raises BenchFailed when a node's ledger would end past `epsilon` (the calibration would then be wrong).
    """
    weights = get_weights(new_model(seed)) if start is None else [np.array(a, np.float32) for a in start]
    noise = {
        shard.provider: 0.0
        if epsilon is None
        else noise_for_job(
            epsilon=epsilon,
            delta=DELTA,
            num_examples=len(shard.features),
            batch_size=settings.batch_size,
            rounds=settings.rounds,
            local_steps=settings.local_steps,
        )
        for shard in shards
    }
    ledgers: dict[str, History] = {shard.provider: () for shard in shards}
    step_seconds: list[float] = []
    for round_number in range(settings.rounds):
        deltas, counts = [], []
        for index, shard in enumerate(shards):
            config = DPConfig(
                noise_multiplier=noise[shard.provider],
                max_grad_norm=settings.max_grad_norm,
                learning_rate=settings.learning_rate,
                batch_size=settings.batch_size,
                steps=settings.local_steps,
                optimizer=settings.optimizer,
            )
            started = time.perf_counter()
            update = local_dp_step(
                weights,
                shard.features,
                shard.targets,
                config=config,
                seed=seed * 1_000_003 + round_number * 101 + index,
                model=model,
            )
            step_seconds.append(time.perf_counter() - started)
            ledgers[shard.provider] = charge(ledgers[shard.provider], update.spend)
            deltas.append(update.weights_delta)
            counts.append(update.num_examples)
        weights = _apply_weighted_mean(weights, deltas, counts)
        if after_round is not None:
            after_round(round_number + 1, weights)
    spent = {provider: spent_epsilon(history, DELTA) for provider, history in ledgers.items()}
    if epsilon is not None and any(value > epsilon for value in spent.values()):
        raise BenchFailed(f"a node spent more than the job's epsilon {epsilon}: {spent}")
    return FedRun(weights=weights, noise_by_node=noise, epsilon_by_node=spent, step_seconds=step_seconds)


def predict(weights: list[np.ndarray], features: np.ndarray) -> np.ndarray:
    """The network's predictions for the rows (float64)."""
    model = model_from_weights(weights)
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(features)).squeeze(-1).numpy().astype(np.float64)


def _apply_weighted_mean(
    weights: list[np.ndarray], deltas: list[list[np.ndarray]], counts: list[int]
) -> list[np.ndarray]:
    """global + sum_k n_k delta_k / sum_k n_k, array by array, kept float32 as on the wire."""
    total = float(sum(counts))
    updated = []
    for index, array in enumerate(weights):
        mean_delta = (
            sum(count * delta[index].astype(np.float64) for count, delta in zip(counts, deltas, strict=True))
            / total
        )
        updated.append((array.astype(np.float64) + mean_delta).astype(np.float32))
    return updated

"""One node's local DP-SGD step of a federated training job, on its own rows, with Opacus.

The model is the job's task's (`trainable.TrainableModel`: the valuation network or the matching head); the
step minimises the squared error of its one prediction per example.

What leaves. `local_dp_step` returns a `LocalUpdate` and nothing else: the DP-trained weights (as a delta
from the global weights), the number of rows, the privacy spend to charge to the agreement's ledger, and one
aggregate training loss. No row, feature, target or per-example value is returned. Only the weights are
covered by the DP guarantee; the row count and the mean loss are plain aggregates the caller chooses to send.

Payload. `weights_delta` is `new - global` for every array of the task's wire format (`models.tasks`):
FedAvg averages deltas weighted by `num_examples` and adds them to the global weights, and deltas stay small,
which suits SecAgg+'s clipping to +-8 and its quantisation.

Privacy. Opacus `PrivacyEngine(accountant="rdp")` with `make_private`'s Poisson sampling: every row joins each
batch independently with probability `sample_rate = 1 / ceil(num_rows / batch_size)` (Opacus's rule; it is
`batch_size / num_rows` when the batch size divides the row count), and each per-example gradient is clipped
to `max_grad_norm` before Gaussian noise of `noise_multiplier * max_grad_norm` is added. The caller checks the
planned spend (`planned_spend`) against the budget before calling and charges the returned `spend` after;
the step refuses to return an update whose recorded spend differs from the plan.

Randomness. Batches and noise come from two torch generators derived from `seed`, so a seed reproduces the
update exactly (for tests). Whoever knows the seed can regenerate the noise and remove it: a node passes no
seed (a fresh one is drawn from the OS) and never takes one from a request. Opacus's `secure_mode` (a CSPRNG
and noise hardened against floating-point attacks) needs the `torchcsprng` package, which is not installed.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from opacus import PrivacyEngine
from torch.nn import functional
from torch.utils.data import DataLoader, TensorDataset

from node.training.trainable import VALUATION, TrainableModel
from policies.privacy_accountant import PrivacySpend, from_opacus_history

OPTIMIZERS = ("sgd", "adam")

__all__ = ["OPTIMIZERS", "DPConfig", "LocalUpdate", "local_dp_step", "planned_spend", "poisson_sample_rate"]


@dataclass(frozen=True)
class DPConfig:
    """Settings of one local DP-SGD step on the mean squared error, with plain SGD or Adam.

    Adam is post-processing of the privatised gradients (Opacus clips and noises each batch's gradient before
    the optimizer sees it), so it spends exactly what SGD spends; its moments start afresh in every round.

    `steps` is the number of optimizer steps (each on one Poisson batch); 25 steps of batch 64 over 1,600 rows
    is one epoch. A noise multiplier of 0 is accepted (for tests); its spend is an infinite epsilon, which the
    ledger refuses under any budget. Raises ValueError for values outside their ranges.
    """

    noise_multiplier: float = 1.0
    max_grad_norm: float = 1.0
    learning_rate: float = 0.05
    batch_size: int = 64
    steps: int = 25
    optimizer: str = "sgd"

    def __post_init__(self) -> None:
        noise, clip, rate = self.noise_multiplier, self.max_grad_norm, self.learning_rate
        batch = self.batch_size
        _require(_finite(noise) and noise >= 0, f"noise_multiplier must be finite and >= 0, got {noise!r}")
        _require(_finite(clip) and clip > 0, f"max_grad_norm must be finite and > 0, got {clip!r}")
        _require(_finite(rate) and rate > 0, f"learning_rate must be finite and > 0, got {rate!r}")
        _require(_positive_int(batch), f"batch_size must be a positive integer, got {batch!r}")
        _require(_positive_int(self.steps), f"steps must be a positive integer, got {self.steps!r}")
        _require(
            self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}"
        )


@dataclass(frozen=True)
class LocalUpdate:
    """What a node sends back from one local step (see the module docstring for what each part reveals)."""

    weights_delta: list[np.ndarray]  # new - global, float32, in the model's wire-format order
    num_examples: int
    spend: PrivacySpend
    train_loss: float  # mean squared error over the examples of the step's batches, before each update


def poisson_sample_rate(num_examples: int, batch_size: int) -> float:
    """The probability with which Opacus's Poisson sampler puts each row in a batch: 1 / ceil(n / batch)."""
    _require(_positive_int(num_examples), f"num_examples must be a positive integer, got {num_examples!r}")
    _require(_positive_int(batch_size), f"batch_size must be a positive integer, got {batch_size!r}")
    return 1 / math.ceil(num_examples / batch_size)


def planned_spend(num_examples: int, config: DPConfig) -> PrivacySpend:
    """The spend `local_dp_step` will record on `num_examples` rows: check it against the budget first."""
    return PrivacySpend(
        noise_multiplier=float(config.noise_multiplier),
        sample_rate=poisson_sample_rate(num_examples, config.batch_size),
        steps=config.steps,
    )


def local_dp_step(
    global_weights: Sequence[np.ndarray],
    features: np.ndarray,
    targets: np.ndarray,
    *,
    config: DPConfig,
    seed: int | None = None,
    model: TrainableModel = VALUATION,
) -> LocalUpdate:
    """Train `model` from `global_weights` on the rows with DP-SGD and return the update.

    Guarantees: the returned weights went through Opacus's per-example clipping and noise with the
    configured settings, and `spend` is what Opacus's own accountant recorded for them (equal to
    `planned_spend(len(features), config)`). Deterministic for a given seed (an int >= 0); `seed=None`
    draws one from the OS.
    Runs torch on one thread and restores the previous thread count.
    Raises ValueError for malformed weights (see `TrainableModel.check_weights`) or data (shape, NaN /
    infinite values, no rows), and RuntimeError if the recorded spend differs from the plan (the update is
    then withheld).
    """
    start = model.check_weights(global_weights)
    inputs, labels = _checked_data(features, targets, model.example_shape)
    plan = planned_spend(len(inputs), config)
    sampling_seed, noise_seed = np.random.SeedSequence(
        secrets.randbits(128) if seed is None else seed
    ).generate_state(2, dtype=np.uint64)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many nodes' steps may share a host; one step must not take every core
    try:
        trained, train_loss, history = _train(
            model,
            start,
            inputs,
            labels,
            config,
            sampling_seed=int(sampling_seed),
            noise_seed=int(noise_seed),
        )
    finally:
        torch.set_num_threads(previous_threads)
    recorded = from_opacus_history(history)
    if recorded != (plan,):
        raise RuntimeError(
            f"Opacus recorded the spend {recorded} but the step was planned and checked as {plan}; "
            "the update is withheld because the ledger would be charged the wrong amount"
        )
    delta = [(new - old).astype(np.float32) for new, old in zip(trained, start, strict=True)]
    return LocalUpdate(weights_delta=delta, num_examples=len(inputs), spend=plan, train_loss=train_loss)


def _train(
    model: TrainableModel,
    start: list[np.ndarray],
    inputs: np.ndarray,
    labels: np.ndarray,
    config: DPConfig,
    *,
    sampling_seed: int,
    noise_seed: int,
) -> tuple[list[np.ndarray], float, list[tuple[float, float, int]]]:
    """DP-SGD on the rows: (new weights, mean loss over the sampled examples, Opacus accountant history)."""
    module = model.module_from_weights(start)
    module.train()
    optimizer_class = torch.optim.Adam if config.optimizer == "adam" else torch.optim.SGD
    optimizer = optimizer_class(module.parameters(), lr=config.learning_rate)
    # make_private replaces this loader by a Poisson one that keeps its generator (and takes its batch size
    # as the expected batch size).
    loader = DataLoader(
        TensorDataset(torch.from_numpy(inputs), torch.from_numpy(labels)),
        batch_size=config.batch_size,
        generator=torch.Generator().manual_seed(sampling_seed),
    )
    engine = PrivacyEngine(accountant="rdp")
    private_model, private_optimizer, private_loader = engine.make_private(
        module=module,
        optimizer=optimizer,
        data_loader=loader,
        noise_multiplier=config.noise_multiplier,
        max_grad_norm=config.max_grad_norm,
        noise_generator=torch.Generator().manual_seed(noise_seed),
    )
    squared_error, examples = 0.0, 0
    for batch_inputs, batch_labels in _batches(private_loader, config.steps):
        private_optimizer.zero_grad(set_to_none=True)
        predictions = model.predict(private_model, batch_inputs)
        batch_error = functional.mse_loss(predictions, batch_labels, reduction="sum")
        # The batch mean, written so that an empty Poisson batch gives 0 instead of NaN.
        (batch_error / max(len(batch_labels), 1)).backward()
        private_optimizer.step()
        squared_error += float(batch_error.detach())
        examples += len(batch_labels)
    train_loss = squared_error / examples if examples else math.nan
    return model.weights_of(private_model), train_loss, list(engine.accountant.history)


def _batches(loader: DataLoader, steps: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Exactly `steps` Poisson batches, starting a new pass over the loader whenever one ends."""
    produced = 0
    while produced < steps:
        before = produced
        for batch in loader:
            yield batch
            produced += 1
            if produced == steps:
                return
        if produced == before:
            raise RuntimeError("the Poisson data loader produced no batch")


def _checked_data(
    features: np.ndarray, targets: np.ndarray, example_shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    inputs = np.array(features, dtype=np.float32, copy=True)
    labels = np.array(targets, dtype=np.float32, copy=True)
    if inputs.shape[1:] != example_shape:
        shape = ", ".join(map(str, example_shape))
        raise ValueError(f"features must have shape (rows, {shape}), got {inputs.shape}")
    if labels.shape != (inputs.shape[0],):
        raise ValueError(f"targets must have shape ({len(inputs)},) like the features, got {labels.shape}")
    if inputs.shape[0] == 0:
        raise ValueError("there are no rows to train on")
    if not (np.isfinite(inputs).all() and np.isfinite(labels).all()):
        raise ValueError("features and targets must hold no NaN or infinite values")
    return inputs, labels


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0

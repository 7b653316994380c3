"""The valuation benchmark's centralized baselines: closed-form ridge, and the same MLP trained on the union.

The MLP is `models.valuation.network`'s, trained without privacy on every node's train rows pooled (what a
single holder of all rows could do). Its optimizer and epoch count are chosen on the validation rows carved
out of the train rows (`_valuation_data.tuning_split`), by validation Spearman, and then it is retrained on
all train rows with that choice: the held-out rows are used only for the final score.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from bench._fedsim import predict
from models.valuation.network import get_weights, new_model
from models.valuation.quality import spearman


@dataclass(frozen=True)
class Recipe:
    """How the centralized MLP is trained: plain minibatch SGD or Adam on the mean squared error."""

    optimizer: str  # "sgd" | "adam"
    learning_rate: float
    batch_size: int = 64

    def label(self) -> str:
        return f"{self.optimizer} lr={self.learning_rate:g} batch={self.batch_size}"


@dataclass(frozen=True)
class Choice:
    recipe: Recipe
    epochs: int
    validation_spearman: float


def choose_recipe(
    recipes: Sequence[Recipe],
    max_epochs: int,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    *,
    seed: int,
) -> Choice:
    """The recipe and epoch count with the best validation Spearman (validated after every epoch)."""
    best: Choice | None = None
    for recipe in recipes:
        scores = _validation_curve(recipe, max_epochs, train, validation, seed=seed)
        epoch = int(np.nanargmax(scores)) + 1
        if best is None or scores[epoch - 1] > best.validation_spearman:
            best = Choice(recipe, epoch, scores[epoch - 1])
    assert best is not None, "no recipe to choose from"
    return best


def _validation_curve(
    recipe: Recipe,
    epochs: int,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    *,
    seed: int,
) -> list[float]:
    """The validation Spearman after each epoch of training with `recipe`."""
    scores: list[float] = []

    def score(weights: list[np.ndarray]) -> None:
        scores.append(spearman(predict(weights, validation[0]), validation[1]))

    train_mlp(recipe, epochs, *train, seed=seed, after_epoch=score)
    return scores


def train_mlp(
    recipe: Recipe,
    epochs: int,
    features: np.ndarray,
    targets: np.ndarray,
    *,
    seed: int,
    after_epoch: Callable[[list[np.ndarray]], None] | None = None,
) -> list[np.ndarray]:
    """Train `new_model(seed)` for `epochs` shuffled passes; returns the weights (wire format)."""
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # like the node step: one core, so runs are comparable on a shared machine
    try:
        model = new_model(seed)
        if recipe.optimizer == "adam":
            optimizer: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=recipe.learning_rate)
        else:
            optimizer = torch.optim.SGD(model.parameters(), lr=recipe.learning_rate)
        inputs, labels = torch.from_numpy(features), torch.from_numpy(targets.astype(np.float32))
        generator = torch.Generator().manual_seed(seed)
        for _epoch in range(epochs):
            model.train()
            order = torch.randperm(len(inputs), generator=generator)
            for start in range(0, len(inputs), recipe.batch_size):
                batch = order[start : start + recipe.batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss = torch.nn.functional.mse_loss(model(inputs[batch]).squeeze(-1), labels[batch])
                loss.backward()
                optimizer.step()
            if after_epoch is not None:
                after_epoch(get_weights(model))
        return get_weights(model)
    finally:
        torch.set_num_threads(previous_threads)

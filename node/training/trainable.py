"""What a node's DP-SGD step and evaluation need of a task's model, in torch: a module from wire weights, the
weights back, and one prediction per example, trained on the squared error of that prediction.

- ``valuation``: the valuation network (`models.valuation.network`) maps a patent's 21 features to its
  cohort-normalised citation target;
- ``matching``: the projection head (`models.matching.projection`) maps a phrase pair, (2, 384) MiniLM
  vectors, to the cosine of its projected phrases less `SCORE_OFFSET`, a predicted human score. Its squared
  error is exactly `projection.pair_losses`, the loss the head's recipe was chosen with, and one pair is one
  example, so Opacus clips each pair's gradient on its own.

Imports torch: import this module only where a round runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from models.matching import projection
from models.tasks import task_wire
from models.valuation import network

__all__ = ["MATCHING", "VALUATION", "TrainableModel", "trainable_model"]


@dataclass(frozen=True)
class TrainableModel:
    task: str
    example_shape: tuple[int, ...]  # one input's shape
    module_from_weights: Callable[[Sequence[np.ndarray]], nn.Module]  # raises ValueError for foreign weights
    weights_of: Callable[[nn.Module], list[np.ndarray]]  # accepts Opacus's wrapper too
    predict: Callable[[nn.Module, torch.Tensor], torch.Tensor]  # (examples, *example_shape) -> (examples,)

    def check_weights(self, weights: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Float32 copies of `weights`. Raises ValueError for a wrong count, shape, or a non-finite value."""
        shapes = task_wire(self.task).shapes
        if len(weights) != len(shapes):
            raise ValueError(f"the {self.task} model has {len(shapes)} weight arrays, got {len(weights)}")
        arrays = []
        for index, (given, shape) in enumerate(zip(weights, shapes, strict=True)):
            array = np.array(given, dtype=np.float32, copy=True)
            if array.shape != shape:
                raise ValueError(f"weight array {index} has shape {array.shape}, expected {shape}")
            if not np.isfinite(array).all():
                raise ValueError(f"weight array {index} holds NaN or infinite values")
            arrays.append(array)
        return arrays


def _network_output(module: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    return module(inputs).squeeze(-1)


def _predicted_score(module: nn.Module, pairs: torch.Tensor) -> torch.Tensor:
    return projection.pair_cosines(module, pairs) - projection.SCORE_OFFSET


VALUATION = TrainableModel(
    task="valuation",
    example_shape=(network.INPUT_SIZE,),
    module_from_weights=network.model_from_weights,
    weights_of=network.get_weights,
    predict=_network_output,
)
MATCHING = TrainableModel(
    task="matching",
    example_shape=(2, projection.INPUT_DIM),
    module_from_weights=projection.head_from_weights,
    weights_of=projection.weights_of_head,
    predict=_predicted_score,
)
_MODELS = {model.task: model for model in (VALUATION, MATCHING)}


def trainable_model(task: str) -> TrainableModel:
    """The torch side of `task`. Raises models.tasks.UnknownTask for another name."""
    task_wire(task)  # the one place unknown names are refused
    return _MODELS[task]

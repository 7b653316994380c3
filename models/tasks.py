"""The models a federated job can train, by the task name a job grant signs, and each one's wire format.

- ``valuation``: the valuation network (`models.valuation.wire`), trained on a node's Lens patent families;
- ``matching``: the 128-d matching head (`models.matching.projection`), trained on a node's human-rated
  phrase pairs.

Weights travel between the aggregator, a node's Flower proxy and the node as a list of float32 arrays, and
between proxy and node as their little-endian bytes concatenated; each task fixes the arrays' shapes. This
module imports no torch: the aggregator and the proxy use it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from models.matching import projection
from models.valuation import wire

__all__ = ["TASKS", "TaskName", "TaskWire", "UnknownTask", "WireFormatError", "task_wire"]

# As contracts.job_grants.TaskName, which a grant signs (a test checks the two agree; models imports no
# contracts).
TaskName = Literal["valuation", "matching"]
TASKS: tuple[str, ...] = get_args(TaskName)
# Both wire modules raise their own class; either means "these are not this model's weights".
WireFormatError = (wire.WireFormatError, projection.WireFormatError)


class UnknownTask(ValueError):
    """A task name that is not one of `TASKS`."""


@dataclass(frozen=True)
class TaskWire:
    """One task's wire format: fresh weights, and the arrays to and from their bytes (checked)."""

    task: str
    initial_weights: Callable[[int], list[np.ndarray]]
    to_bytes: Callable[[Sequence[np.ndarray]], bytes]
    from_bytes: Callable[[bytes], list[np.ndarray]]
    shapes: tuple[tuple[int, ...], ...]

    @property
    def parameter_count(self) -> int:
        return sum(int(np.prod(shape)) for shape in self.shapes)


_WIRES = {
    "valuation": TaskWire(
        "valuation",
        wire.initial_weights,
        wire.weights_to_bytes,
        wire.weights_from_bytes,
        tuple(wire.weight_shapes()),
    ),
    "matching": TaskWire(
        "matching",
        projection.initial_weights,
        projection.weights_to_bytes,
        projection.weights_from_bytes,
        tuple(projection.weight_shapes()),
    ),
}


def task_wire(task: str) -> TaskWire:
    """The wire format of `task`. Raises UnknownTask for another name."""
    try:
        return _WIRES[task]
    except KeyError:
        raise UnknownTask(f"unknown task {task!r}; a job trains one of: {', '.join(TASKS)}") from None

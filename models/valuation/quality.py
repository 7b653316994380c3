"""Held-out quality of a valuation model: Spearman rank correlation and R², and R² summed across nodes.

`spearman` and `r_squared` score predictions against targets where both are in one place (a node's own
held-out rows, or a benchmark that holds all of them). `ErrorSums` is what a node's Evaluate returns instead
of its rows: seven sums from which the coordinator, adding the nodes' sums, gets the R², the MSE and the
Pearson correlation of all the held-out rows together exactly (no averaging of per-node ratios). Spearman has
no such sums (ranks need every value at once), so a federated job reports each node's Spearman on its own
rows. The matching head is scored with the same sums (its prediction is a pair's score).

Undefined values are NaN, never an exception: Spearman when either side is constant (no ranking to
correlate), R² when the targets are constant (no variance to explain). A degenerate model that predicts one
value for every row is a legitimate result of training, and its evaluation must still be reported.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["SUM_FIELDS", "ErrorSums", "average_ranks", "r_squared", "spearman"]

ArrayLike = Sequence[float] | np.ndarray


def average_ranks(values: ArrayLike) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of the ranks they span ([5, 1, 5] -> [2.5, 1, 2.5])."""
    array = _vector(values, "values")
    order = np.argsort(array, kind="stable")
    ordered = array[order]
    starts_group = np.empty(len(array), dtype=bool)
    starts_group[:1] = True
    starts_group[1:] = ordered[1:] != ordered[:-1]
    group = np.cumsum(starts_group) - 1
    first = np.flatnonzero(starts_group)  # 0-based position where each group of equal values starts
    last = np.append(first[1:], len(array)) - 1
    ranks = np.empty(len(array), dtype=np.float64)
    ranks[order] = ((first + last) / 2 + 1)[group]
    return ranks


def spearman(predicted: ArrayLike, actual: ArrayLike) -> float:
    """Spearman's rank correlation: the Pearson correlation of the average ranks, in [-1, 1].

    NaN when either side is constant. Raises ValueError when the lengths differ, fewer than 2 values are
    given, or a value is NaN or infinite.
    """
    prediction, target = _pair(predicted, actual)
    return _pearson(average_ranks(prediction), average_ranks(target))


def r_squared(predicted: ArrayLike, actual: ArrayLike) -> float:
    """The coefficient of determination 1 - SSE / SST (SST around the targets' own mean); can be < 0.

    NaN when the targets are constant. Raises as `spearman` does.
    """
    prediction, target = _pair(predicted, actual)
    return ErrorSums.of(prediction, target).r_squared()


@dataclass(frozen=True)
class ErrorSums:
    """Sums over held-out rows: how many, the squared prediction error, the targets, the squared targets, the
    predictions, the squared predictions and the products of prediction and target.

    Adding two gives the sums of both sets, so the coordinator can add every node's sums and get the pooled
    R², MSE and Pearson correlation exactly. Raises ValueError on construction for a count that is not a
    non-negative int, a non-finite sum, or a negative sum of squares (values a node's reply could carry by
    mistake or malice).
    """

    count: int
    sum_squared_error: float
    sum_target: float
    sum_target_squared: float
    sum_prediction: float
    sum_prediction_squared: float
    sum_product: float

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0:
            raise ValueError(f"count must be a non-negative integer, got {self.count!r}")
        for name in SUM_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.sum_squared_error < 0 or self.sum_target_squared < 0 or self.sum_prediction_squared < 0:
            raise ValueError("sums of squares cannot be negative")

    @classmethod
    def empty(cls) -> ErrorSums:
        """The sums of no rows: the identity of `+`."""
        return cls(0, *(0.0,) * len(SUM_FIELDS))

    @classmethod
    def of(cls, predicted: ArrayLike, actual: ArrayLike) -> ErrorSums:
        """The sums over paired predictions and targets. Raises as `spearman` does (1 row is accepted)."""
        prediction, target = _pair(predicted, actual, minimum=1)
        return cls(
            count=len(target),
            sum_squared_error=float(np.sum((prediction - target) ** 2)),
            sum_target=float(np.sum(target)),
            sum_target_squared=float(np.sum(target**2)),
            sum_prediction=float(np.sum(prediction)),
            sum_prediction_squared=float(np.sum(prediction**2)),
            sum_product=float(np.sum(prediction * target)),
        )

    def __add__(self, other: object) -> ErrorSums:
        if not isinstance(other, ErrorSums):
            return NotImplemented
        return ErrorSums(
            self.count + other.count, *(getattr(self, name) + getattr(other, name) for name in SUM_FIELDS)
        )

    def mse(self) -> float:
        """Mean squared error. Raises ValueError when the sums cover no rows."""
        self._require_rows()
        return self.sum_squared_error / self.count

    def total_sum_of_squares(self) -> float:
        """Sum of squared deviations of the targets from their mean (never below 0)."""
        self._require_rows()
        return max(0.0, self.sum_target_squared - self.sum_target**2 / self.count)

    def r_squared(self) -> float:
        """1 - SSE / SST over every row the sums cover; NaN when the targets are constant.

        Raises ValueError when the sums cover no rows.
        """
        total = self.total_sum_of_squares()
        # Rounding leaves SST a hair above 0 for constant targets; relative to their size that is no variance.
        if total <= 1e-12 * max(self.sum_target_squared, 1.0):
            return math.nan
        return 1.0 - self.sum_squared_error / total

    def pearson(self) -> float:
        """Pearson's correlation of predictions and targets over every row the sums cover, in [-1, 1]; NaN
        when either side is (numerically) constant. Raises ValueError when the sums cover no rows.

        Computed from raw sums, so it loses precision when the values' mean dwarfs their spread; predictions
        and targets here are O(1) with spreads of the same order.
        """
        self._require_rows()
        n = self.count
        covariance = self.sum_product - self.sum_prediction * self.sum_target / n
        variance_prediction = self.sum_prediction_squared - self.sum_prediction**2 / n
        variance_target = self.total_sum_of_squares()
        scale = variance_prediction * variance_target
        if variance_prediction <= 1e-12 * max(self.sum_prediction_squared, 1.0) or scale <= 0:
            return math.nan
        if variance_target <= 1e-12 * max(self.sum_target_squared, 1.0):
            return math.nan
        return max(-1.0, min(1.0, covariance / math.sqrt(scale)))

    def _require_rows(self) -> None:
        if self.count == 0:
            raise ValueError("the error sums cover no rows: there is nothing to score")


# The sums besides the count, as Evaluate replies carry them (contracts/v1/training.proto).
SUM_FIELDS = (
    "sum_squared_error",
    "sum_target",
    "sum_target_squared",
    "sum_prediction",
    "sum_prediction_squared",
    "sum_product",
)


def _vector(values: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a flat sequence of numbers, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} hold NaN or infinite values")
    return array


def _pair(predicted: ArrayLike, actual: ArrayLike, *, minimum: int = 2) -> tuple[np.ndarray, np.ndarray]:
    prediction, target = _vector(predicted, "predictions"), _vector(actual, "targets")
    if len(prediction) != len(target):
        raise ValueError(f"{len(prediction)} predictions for {len(target)} targets")
    if len(target) < minimum:
        raise ValueError(f"at least {minimum} rows are needed to score, got {len(target)}")
    return prediction, target


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    dx, dy = x - x.mean(), y - y.mean()
    scale = math.sqrt(float(np.dot(dx, dx)) * float(np.dot(dy, dy)))
    if scale == 0.0:
        return math.nan
    return max(-1.0, min(1.0, float(np.dot(dx, dy)) / scale))

"""The valuation network's encryption-friendly head: every ReLU replaced by a low-degree polynomial, fitted
without a single training row.

CKKS adds and multiplies; it has no max(z, 0). So each hidden unit's ReLU becomes a polynomial of degree 2 to
4 fitted by least squares to ReLU on an interval [low, high] of that unit's pre-activation, and the rest of
the trained network (its weights and biases) is kept as it is. The party that evaluates the head (the
coordinator holding the exported model) has the weights and nothing else, so every choice below uses only
the weights and published bounds of the features:

- Inputs. The network takes `models.valuation.features` exactly as `extract_features` gives them: log1p
  counts, 0/1 flags, age in years. Nothing is standardised, at training or here, so there are no node-local
  statistics to share: the consumer computes its features with `extract_features(row, reference_year=...)`
  at the job's `reference_year` (the job grant's setting) and clips them into the head's `FeatureBounds`
  (`FeatureBounds.clip`, which `encrypted.encrypt_features` does).
- Intervals. From the bounds and the weights, interval arithmetic gives each first-layer unit a range that
  holds its pre-activation for every feature vector inside the bounds (the jurisdiction one-hot group counts
  as one feature: exactly one of its columns is 1). The polynomials' exact ranges on those intervals give
  the second layer's intervals the same way. So the polynomials are never evaluated outside the interval
  they were fitted on, where they diverge. The price: an interval covers corners of the box no patent
  reaches, which makes it wider than the data's.
- Weighting. A least-squares fit uniform over such a wide interval spends its accuracy where no patent lies
  (measured: RMSE 0.46 to 0.81 against the centralized ReLU network's output, whose spread is about 0.3).
  So the fit is weighted by synthetic inputs instead of rows: feature vectors drawn uniformly inside the
  bounds (a uniformly drawn jurisdiction), pushed through the weights, give each unit a sample of
  pre-activations; the fit is least squares over that sample (99% of the weight) and over a uniform grid of
  the interval (1%, which keeps the polynomial tame everywhere on it). `weighting="uniform"` is the plain
  fit, for comparison.
- Bounds. `DEFAULT_FEATURE_BOUNDS` caps each count at a round number just above the k-anonymous maximum
  (the 5th largest, as the catalog's field ranges show it) in the drone families, and the age at
  `DEFAULT_AGE_CAP_YEARS`; a model builder may set its own. A consumer's feature above a cap is clipped, so
  its value is that of a patent at the cap.

`compare` and `measure_heads` score a head against the ReLU network on feature rows (max |difference|,
RMSE, Spearman of the two outputs); bench/valuation_he.py runs them on the 1,148 held-out drone families.
Measured there (2026-11-21), for the centralized MLP / the federated DP model (epsilon 8): the default,
degree 4 with synthetic weighting, is off by RMSE 0.109 / 0.071 (Spearman 0.93 / 0.94 against the ReLU
network's outputs) and ranks the held-out targets with Spearman 0.647 / 0.643, where the ReLU networks
have 0.695 / 0.638 (ridge 0.617). Degree 3: RMSE 0.119 / 0.082; degree 2: 0.174 / 0.088; uniform least
squares: 0.46 to 0.81 / 0.17 to 0.32; the model builder's explicit interval [-8, 8]: 0.68 / 0.29. Degrees
3 and 4 cost the same under encryption, so 4 is the default. Longer training grows the weights and the
pre-activations, and the replacement error with them; a network trained with these activations in place
(not done here) would not pay it. The encrypted evaluation itself adds at most 3e-7.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np

from models.valuation.features import FEATURE_NAMES
from models.valuation.quality import spearman
from models.valuation.wire import HIDDEN_SIZES, INPUT_SIZE, WEIGHT_NAMES, weight_shapes

__all__ = [
    "DEFAULT_AGE_CAP_YEARS",
    "DEFAULT_COUNT_CAPS",
    "DEFAULT_DEGREE",
    "DEFAULT_FEATURE_BOUNDS",
    "SUPPORTED_DEGREES",
    "Activation",
    "FeatureBounds",
    "HeadCandidate",
    "HeadError",
    "OutputDifference",
    "PolynomialHead",
    "compare",
    "fit_relu",
    "measure_heads",
    "preactivation_intervals",
    "relu_predict",
]

SUPPORTED_DEGREES: Final = (2, 3, 4)  # 3 and 4 cost the same under encryption (depth 2); see encrypted.py
DEFAULT_DEGREE: Final = 4  # lower error than 3 at the same cost under encryption (module docstring)
# A patent's term is 20 years; older filings are valued as 30 years old (caps 20 and 40 measured no better).
DEFAULT_AGE_CAP_YEARS: Final = 30.0
# Counts above these are clipped (each feature is log1p of the count): round numbers just above the 5th
# largest of each count in the drone families' training rows (e.g. extended family 767, classes 60).
DEFAULT_COUNT_CAPS: Final[Mapping[str, float]] = {
    "log_simple_family_size": 100,
    "log_extended_family_size": 1000,
    "log_priority_numbers": 50,
    "log_cpc_classes": 100,
    "log_ipc_classes": 50,
    "log_applicants": 20,
    "log_inventors": 30,
    "log_non_patent_citations": 100,
    "log_us_classes": 50,
    "log_priority_offices": 5,
    "log_cpc_subclasses": 20,
}
JURISDICTION_COLUMNS: Final = tuple(
    i for i, name in enumerate(FEATURE_NAMES) if name.startswith("jurisdiction_")
)
Weighting = Literal["synthetic", "uniform"]

_GRID_POINTS = 513  # the uniform grid over an interval
_UNIFORM_SHARE = 0.01  # the grid's share of the fit's weight under synthetic weighting
_SYNTHETIC_SAMPLES = 4096
_SYNTHETIC_SEED = 20261121  # fixed: the same weights and bounds always give the same head


class HeadError(ValueError):
    """Weights, bounds, a degree, an interval or features the head cannot use; the message says why."""


@dataclass(frozen=True)
class FeatureBounds:
    """The box the consumer's features are clipped into: one [low, high] per feature, in FEATURE_NAMES
    order, and the columns of the one-hot group (exactly one of them is 1). Raises HeadError for bounds of
    the wrong length, not finite, or with low > high."""

    low: tuple[float, ...]
    high: tuple[float, ...]
    one_hot: tuple[int, ...] = JURISDICTION_COLUMNS

    def __post_init__(self) -> None:
        low, high = np.asarray(self.low, dtype=np.float64), np.asarray(self.high, dtype=np.float64)
        if low.shape != (INPUT_SIZE,) or high.shape != (INPUT_SIZE,):
            raise HeadError(f"bounds need {INPUT_SIZE} lows and highs, not {low.shape} and {high.shape}")
        if not (np.isfinite(low).all() and np.isfinite(high).all()) or (low > high).any():
            raise HeadError("bounds must be finite with low <= high for every feature")
        if not set(self.one_hot) <= set(range(INPUT_SIZE)):
            raise HeadError(f"one-hot columns must lie in 0..{INPUT_SIZE - 1}, not {self.one_hot}")

    @classmethod
    def from_caps(
        cls,
        count_caps: Mapping[str, float] = DEFAULT_COUNT_CAPS,
        age_cap_years: float = DEFAULT_AGE_CAP_YEARS,
    ) -> FeatureBounds:
        """Counts in [0, cap] (as log1p), age in [0, age_cap_years], flags in [0, 1]. Raises HeadError for a
        cap on an unknown feature or a cap below 0."""
        unknown = set(count_caps) - set(FEATURE_NAMES)
        if unknown:
            raise HeadError(f"caps name features the network does not have: {sorted(unknown)}")
        if any(not cap >= 0 for cap in (*count_caps.values(), age_cap_years)):
            raise HeadError("every cap must be a number >= 0")
        high = [1.0] * INPUT_SIZE
        for name, cap in count_caps.items():
            high[FEATURE_NAMES.index(name)] = float(np.log1p(cap))
        high[FEATURE_NAMES.index("age_years")] = float(age_cap_years)
        return cls(low=(0.0,) * INPUT_SIZE, high=tuple(high))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.low, dtype=np.float64), np.asarray(self.high, dtype=np.float64)

    def clip(self, features: np.ndarray) -> np.ndarray:
        """The features (one vector or rows of them) clipped into the box, as float64.

        Raises HeadError unless the last axis has INPUT_SIZE values and every value is finite."""
        array = np.asarray(features, dtype=np.float64)
        if array.ndim not in (1, 2) or array.shape[-1] != INPUT_SIZE:
            raise HeadError(f"features must have {INPUT_SIZE} values per patent, not shape {array.shape}")
        if not np.isfinite(array).all():
            raise HeadError("features hold NaN or infinite values")
        low, high = self.arrays()
        return np.clip(array, low, high)

    def sample(self, count: int, seed: int) -> np.ndarray:
        """Synthetic feature vectors: uniform in the box, one uniformly drawn column of the one-hot group."""
        rng = np.random.default_rng(seed)
        low, high = self.arrays()
        samples = rng.uniform(low, high, size=(count, INPUT_SIZE))
        if self.one_hot:
            columns = np.asarray(self.one_hot)
            samples[:, columns] = 0.0
            samples[np.arange(count), columns[rng.integers(0, len(columns), count)]] = 1.0
        return samples


DEFAULT_FEATURE_BOUNDS: Final = FeatureBounds.from_caps()


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class Activation:
    """One hidden layer's polynomials: per unit, the interval it was fitted on and its coefficients
    (lowest degree first, shape units x (degree + 1))."""

    low: np.ndarray
    high: np.ndarray
    coefficients: np.ndarray

    def __call__(self, preactivations: np.ndarray) -> np.ndarray:
        """Each unit's polynomial applied to its column of `preactivations` (rows x units), by Horner."""
        result = np.zeros_like(preactivations, dtype=np.float64)
        for power in range(self.coefficients.shape[1] - 1, -1, -1):
            result = result * preactivations + self.coefficients[:, power]
        return result

    def output_ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """Each polynomial's exact minimum and maximum on its interval (ends and real critical points)."""
        lows, highs = [], []
        for coefficients, low, high in zip(self.coefficients, self.low, self.high, strict=True):
            points = [low, high]
            derivative = np.polynomial.polynomial.polyder(coefficients)
            if np.any(derivative):
                roots = np.polynomial.polynomial.polyroots(np.trim_zeros(derivative, "b"))
                points += [r.real for r in roots if abs(r.imag) < 1e-12 and low < r.real < high]
            values = np.polynomial.polynomial.polyval(np.asarray(points), coefficients)
            lows.append(values.min())
            highs.append(values.max())
        return np.asarray(lows), np.asarray(highs)


def preactivation_intervals(
    weight: np.ndarray, bias: np.ndarray, low: np.ndarray, high: np.ndarray, one_hot: Sequence[int] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """Per unit, the least and greatest `weight @ x + bias` over every x in the box [low, high] in which the
    `one_hot` columns hold exactly one 1 (interval arithmetic; exact for a box)."""
    lower, upper = np.minimum(weight * low, weight * high), np.maximum(weight * low, weight * high)
    rest = [column for column in range(weight.shape[1]) if column not in set(one_hot)]
    least, greatest = lower[:, rest].sum(axis=1) + bias, upper[:, rest].sum(axis=1) + bias
    if one_hot:
        least = least + weight[:, list(one_hot)].min(axis=1)
        greatest = greatest + weight[:, list(one_hot)].max(axis=1)
    return least, greatest


def fit_relu(low: float, high: float, degree: int, samples: np.ndarray | None = None) -> np.ndarray:
    """Least-squares coefficients (lowest degree first, degree + 1 of them) of a polynomial close to ReLU on
    [low, high]: uniform over the interval, or, given `samples` of the pre-activation, over those samples
    (clipped to the interval) with 1% of the weight left uniform.

    An interval on one side of 0 gives ReLU itself (0, or z) exactly. Raises HeadError for a degree outside
    SUPPORTED_DEGREES or an interval that is not finite or has low > high.
    """
    if degree not in SUPPORTED_DEGREES:
        raise HeadError(f"the degree must be one of {SUPPORTED_DEGREES}, not {degree!r}")
    if not (np.isfinite(low) and np.isfinite(high) and low <= high):
        raise HeadError(f"an interval must be finite with low <= high, not [{low}, {high}]")
    coefficients = np.zeros(degree + 1)
    if high <= 0:
        return coefficients
    if low >= 0:
        coefficients[1] = 1.0
        return coefficients
    points = np.linspace(low, high, _GRID_POINTS)
    weights = np.full(_GRID_POINTS, 1.0 / _GRID_POINTS)
    if samples is not None and len(samples):
        clipped = np.clip(np.asarray(samples, dtype=np.float64), low, high)
        points = np.concatenate([points, clipped])
        weights = np.concatenate(
            [weights * _UNIFORM_SHARE, np.full(len(clipped), (1 - _UNIFORM_SHARE) / len(clipped))]
        )
    # Fitted on [-1, 1] (the interval's own window) for conditioning, then converted to powers of z.
    fitted = np.polynomial.Polynomial.fit(
        points, np.maximum(points, 0.0), degree, domain=[low, high], w=np.sqrt(weights)
    )
    converted = fitted.convert().coef
    coefficients[: len(converted)] = converted
    return coefficients


def relu_predict(weights: Sequence[np.ndarray], features: np.ndarray) -> np.ndarray:
    """The trained network itself (ReLU), in numpy float64, on rows of features as they are (not clipped)."""
    w1, b1, w2, b2, w3, b3 = _checked_weights(weights)
    hidden = np.maximum(np.asarray(features, dtype=np.float64) @ w1.T + b1, 0.0)
    hidden = np.maximum(hidden @ w2.T + b2, 0.0)
    return hidden @ w3[0] + b3[0]


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class PolynomialHead:
    """The valuation network with polynomial activations: the trained weights (float64, wire order), one
    `Activation` per hidden layer, and the feature bounds its inputs are clipped into. Made by
    `from_weights`; `predict` is its plaintext value, which the encrypted evaluation reproduces."""

    weights: tuple[np.ndarray, ...]
    activations: tuple[Activation, ...]
    bounds: FeatureBounds
    degree: int

    @classmethod
    def from_weights(
        cls,
        weights: Sequence[np.ndarray],
        *,
        degree: int = DEFAULT_DEGREE,
        bounds: FeatureBounds = DEFAULT_FEATURE_BOUNDS,
        weighting: Weighting = "synthetic",
        intervals: Sequence[tuple[float, float]] | None = None,
    ) -> PolynomialHead:
        """The head of trained wire-format `weights`.

        Intervals come from `bounds` (see the module docstring) unless `intervals` gives one (low, high)
        per hidden layer, shared by its units: the model builder's explicit choice, which holds no
        guarantee that a pre-activation stays inside it. Raises HeadError for weights that are not the
        valuation network's, a degree outside SUPPORTED_DEGREES, an unknown weighting, or intervals that
        are not one finite (low <= high) pair per hidden layer.
        """
        arrays = _checked_weights(weights)
        if weighting not in ("synthetic", "uniform"):
            raise HeadError(f"weighting must be 'synthetic' or 'uniform', not {weighting!r}")
        if intervals is not None and len(intervals) != len(HIDDEN_SIZES):
            raise HeadError(f"give one (low, high) per hidden layer ({len(HIDDEN_SIZES)}), not {intervals!r}")
        inputs = bounds.sample(_SYNTHETIC_SAMPLES, _SYNTHETIC_SEED)
        box_low, box_high = bounds.arrays()
        one_hot: Sequence[int] = bounds.one_hot
        activations = []
        for layer in range(len(HIDDEN_SIZES)):
            weight, bias = arrays[2 * layer], arrays[2 * layer + 1]
            if intervals is None:
                low, high = preactivation_intervals(weight, bias, box_low, box_high, one_hot)
            else:
                low = np.full(len(bias), float(intervals[layer][0]))
                high = np.full(len(bias), float(intervals[layer][1]))
            preactivations = inputs @ weight.T + bias
            coefficients = np.stack(
                [
                    fit_relu(
                        low[unit],
                        high[unit],
                        degree,
                        preactivations[:, unit] if weighting == "synthetic" else None,
                    )
                    for unit in range(len(bias))
                ]
            )
            activation = Activation(low, high, coefficients)
            activations.append(activation)
            inputs = activation(np.clip(preactivations, low, high))
            box_low, box_high = activation.output_ranges()
            one_hot = ()
        return cls(weights=arrays, activations=tuple(activations), bounds=bounds, degree=degree)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """The head's values for rows of features (or one vector: then a 1-element array), after clipping
        them into the bounds. Raises HeadError as `FeatureBounds.clip` does."""
        values = self.bounds.clip(features)
        rows = values.reshape(-1, INPUT_SIZE)
        for layer, activation in enumerate(self.activations):
            rows = activation(rows @ self.weights[2 * layer].T + self.weights[2 * layer + 1])
        return rows @ self.weights[-2][0] + self.weights[-1][0]


@dataclass(frozen=True)
class OutputDifference:
    """How far one model's outputs are from another's on the same rows."""

    max_abs: float
    rmse: float
    spearman: float


def compare(outputs: np.ndarray, reference: np.ndarray) -> OutputDifference:
    """Max |outputs - reference|, RMSE, and the Spearman correlation of the two (NaN if one is constant)."""
    difference = np.asarray(outputs, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    return OutputDifference(
        max_abs=float(np.abs(difference).max()),
        rmse=float(np.sqrt(np.mean(difference**2))),
        spearman=spearman(outputs, reference),
    )


@dataclass(frozen=True)
class HeadCandidate:
    """One way of making a head, as `PolynomialHead.from_weights` takes it."""

    label: str
    degree: int
    bounds: FeatureBounds = DEFAULT_FEATURE_BOUNDS
    weighting: Weighting = "synthetic"
    intervals: tuple[tuple[float, float], ...] | None = None

    def head(self, weights: Sequence[np.ndarray]) -> PolynomialHead:
        return PolynomialHead.from_weights(
            weights,
            degree=self.degree,
            bounds=self.bounds,
            weighting=self.weighting,
            intervals=self.intervals,
        )


def measure_heads(
    weights: Sequence[np.ndarray], features: np.ndarray, candidates: Sequence[HeadCandidate]
) -> list[tuple[HeadCandidate, OutputDifference]]:
    """Each candidate head against the ReLU network on `features` (the ReLU network on them as they are, the
    head on them clipped into its bounds, as a consumer would send them)."""
    reference = relu_predict(weights, features)
    return [
        (candidate, compare(candidate.head(weights).predict(features), reference)) for candidate in candidates
    ]


def _checked_weights(weights: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    """Float64 copies of wire-format weights. Raises HeadError for a wrong count or shape, or NaN / inf."""
    if len(weights) != len(WEIGHT_NAMES):
        raise HeadError(
            f"expected {len(WEIGHT_NAMES)} weight arrays ({', '.join(WEIGHT_NAMES)}), got {len(weights)}"
        )
    arrays = []
    for name, given, shape in zip(WEIGHT_NAMES, weights, weight_shapes(), strict=True):
        array = np.array(given, dtype=np.float64, copy=True)
        if array.shape != shape:
            raise HeadError(f"weight array {name} has shape {array.shape}, expected {shape}")
        if not np.isfinite(array).all():
            raise HeadError(f"weight array {name} holds NaN or infinite values")
        arrays.append(array)
    return tuple(arrays)

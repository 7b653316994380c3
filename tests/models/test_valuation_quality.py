"""Held-out quality metrics against literal reference computations and small cases worked by hand."""

from __future__ import annotations

import itertools
import math
from functools import reduce

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.valuation.quality import ErrorSums, average_ranks, r_squared, spearman

# Small integers make ties frequent, which is where rank code goes wrong.
values = st.lists(st.integers(-5, 5).map(float), min_size=2, max_size=40)


def reference_ranks(xs: list[float]) -> list[float]:
    """Rank by definition: 1 + how many are smaller + half of how many others are equal."""
    return [1 + sum(y < x for y in xs) + (sum(y == x for y in xs) - 1) / 2 for x in xs]


def reference_pearson(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    covariance = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    spread = math.sqrt(sum((x - mx) ** 2 for x in xs) * sum((y - my) ** 2 for y in ys))
    return math.nan if spread == 0 else covariance / spread


def reference_r_squared(predicted: list[float], actual: list[float]) -> float:
    mean = sum(actual) / len(actual)
    total = sum((a - mean) ** 2 for a in actual)
    return (
        math.nan
        if total == 0
        else 1 - sum((p - a) ** 2 for p, a in zip(predicted, actual, strict=True)) / total
    )


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def test_ranks_by_hand() -> None:
    assert list(average_ranks([5, 1, 5])) == [2.5, 1.0, 2.5]
    assert list(average_ranks([3, 3, 3, 0])) == [3.0, 3.0, 3.0, 1.0]
    assert list(average_ranks([0.2, -1, 7, 0.2, 0.2])) == [3.0, 1.0, 5.0, 3.0, 3.0]


def test_spearman_by_hand() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [9, 4, 1, 0]) == pytest.approx(-1.0)
    assert spearman([1, 2, 3], [1, 100, 1000]) == pytest.approx(1.0)  # ranks, not values
    # predicted ranks [1, 2, 3, 4], actual [0, 0, 5, 0] -> ranks [2, 2, 4, 2]:
    # deviations (-1.5, -0.5, 0.5, 1.5) and (-0.5, -0.5, 1.5, -0.5); products 0.75 + 0.25 + 0.75 - 0.75 = 1;
    # sums of squares 5 and 3: rho = 1 / sqrt(15)
    assert spearman([1, 2, 3, 4], [0, 0, 5, 0]) == pytest.approx(1 / math.sqrt(15))


def test_r_squared_by_hand() -> None:
    # actual mean 2, SST = 2; SSE = 0.25 + 0 + 0.25 = 0.5: R² = 1 - 0.5 / 2
    assert r_squared([1.5, 2, 2.5], [1, 2, 3]) == pytest.approx(0.75)
    assert r_squared([2, 2, 2], [1, 2, 3]) == pytest.approx(0.0)  # the mean explains nothing
    assert r_squared([3, 2, 1], [1, 2, 3]) == pytest.approx(-3.0)  # worse than the mean


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_spearman_and_r_squared_match_the_references(data: st.DataObject) -> None:
    actual = data.draw(values)
    predicted = data.draw(st.lists(st.integers(-5, 5).map(float), min_size=len(actual), max_size=len(actual)))
    assert list(average_ranks(predicted)) == reference_ranks(predicted)
    expected = reference_pearson(reference_ranks(predicted), reference_ranks(actual))
    assert same(spearman(predicted, actual), expected)
    assert same(r_squared(predicted, actual), reference_r_squared(predicted, actual))


def test_undefined_values_are_nan_not_errors() -> None:
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))  # a model that predicts one value ranks nothing
    assert math.isnan(spearman([1, 2, 3], [4, 4, 4]))
    assert math.isnan(r_squared([1, 2, 3], [4, 4, 4]))


@pytest.mark.parametrize(
    ("predicted", "actual", "reason"),
    [
        ([1, 2], [1, 2, 3], "2 predictions for 3 targets"),
        ([1], [1], "at least 2"),
        ([1, math.nan], [1, 2], "NaN"),
        ([1, 2], [1, math.inf], "NaN or infinite"),
        ([[1, 2]], [[1, 2]], "flat"),
    ],
)
def test_malformed_inputs_are_refused(predicted: list, actual: list, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        spearman(predicted, actual)
    with pytest.raises(ValueError, match=reason):
        r_squared(predicted, actual)


def test_error_sums_by_hand() -> None:
    sums = ErrorSums.of([1.5, 2, 2.5], [1, 2, 3])
    assert sums == ErrorSums(
        count=3,
        sum_squared_error=0.5,
        sum_target=6.0,
        sum_target_squared=14.0,
        sum_prediction=6.0,
        sum_prediction_squared=12.5,
        sum_product=13.0,
    )
    assert sums.mse() == pytest.approx(0.5 / 3)
    assert sums.r_squared() == pytest.approx(0.75)
    assert sums.pearson() == pytest.approx(1.0)  # the predictions are an affine map of the targets
    assert math.isnan(ErrorSums.of([2, 2], [1, 3]).pearson())  # constant predictions


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(-3, 3), st.floats(-3, 3)), min_size=2, max_size=60), st.data())
def test_summed_node_sums_give_the_pooled_r_squared(
    pairs: list[tuple[float, float]], data: st.DataObject
) -> None:
    # Cut the rows into up to four nodes' shares at random points; the nodes' sums add up to the pooled ones.
    cuts = sorted(data.draw(st.lists(st.integers(0, len(pairs)), max_size=3)))
    bounds = [0, *cuts, len(pairs)]
    shares = [pairs[start:end] for start, end in itertools.pairwise(bounds) if end > start]
    total = reduce(
        lambda acc, share: acc + ErrorSums.of([p for p, _ in share], [a for _, a in share]),
        shares,
        ErrorSums.empty(),
    )
    predicted, actual = [p for p, _ in pairs], [a for _, a in pairs]
    assert total.count == len(pairs)
    expected = reference_r_squared(predicted, actual)
    if math.isnan(expected) or abs(sum((a - sum(actual) / len(actual)) ** 2 for a in actual)) < 1e-6:
        return  # constant or near-constant targets: R² is undefined or dominated by rounding
    assert total.r_squared() == pytest.approx(expected, rel=1e-6, abs=1e-6)
    assert total.mse() == pytest.approx(np.mean((np.array(predicted) - np.array(actual)) ** 2))
    if np.ptp(predicted) > 1e-3:
        assert total.pearson() == pytest.approx(np.corrcoef(predicted, actual)[0, 1], abs=1e-6)


def test_error_sums_identity_and_refusals() -> None:
    sums = ErrorSums.of([1, 2], [2, 2])
    assert sums + ErrorSums.empty() == sums
    with pytest.raises(ValueError, match="no rows"):
        ErrorSums.empty().r_squared()
    with pytest.raises(ValueError, match="no rows"):
        ErrorSums.empty().mse()
    assert math.isnan(sums.r_squared())  # constant targets
    for bad in (
        {"count": -1},
        {"count": 1.5},
        {"count": True},
        {"sum_squared_error": -0.1},
        {"sum_target_squared": -1.0},
        {"sum_prediction_squared": -1.0},
        {"sum_target": math.nan},
        {"sum_product": math.inf},
        {"sum_squared_error": math.inf},
    ):
        fields = {
            "count": 2,
            "sum_squared_error": 1.0,
            "sum_target": 1.0,
            "sum_target_squared": 1.0,
            "sum_prediction": 1.0,
            "sum_prediction_squared": 1.0,
            "sum_product": 1.0,
            **bad,
        }
        with pytest.raises(ValueError):
            ErrorSums(**fields)
    with pytest.raises(TypeError):
        sums + 1  # type: ignore[operator]

"""The valuation network and its wire format: fixed order and shapes, exact round trips, refusals, Opacus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from opacus import GradSampleModule
from opacus.validators import ModuleValidator
from torch import nn

from models.valuation.features import FEATURE_NAMES, feature_matrix
from models.valuation.network import (
    INPUT_SIZE,
    WEIGHT_NAMES,
    check_weights,
    get_weights,
    model_from_weights,
    new_model,
    set_weights,
    unwrap,
    weight_shapes,
)
from node.partition import read_rows

LENS_SAMPLE = Path(__file__).resolve().parents[2] / "data" / "lens_drone_families.csv.gz"


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_layout_is_21_32_16_1_in_a_fixed_order() -> None:
    assert INPUT_SIZE == len(FEATURE_NAMES) == 21
    assert WEIGHT_NAMES == (
        "hidden1.weight",
        "hidden1.bias",
        "hidden2.weight",
        "hidden2.bias",
        "output.weight",
        "output.bias",
    )
    assert weight_shapes() == [(32, 21), (32,), (16, 32), (16,), (1, 16), (1,)]


def test_weights_follow_the_layout_and_are_float32_copies() -> None:
    model = new_model(0)
    weights = get_weights(model)
    assert [array.shape for array in weights] == weight_shapes()
    assert all(array.dtype == np.float32 for array in weights)
    assert sum(array.size for array in weights) == sum(p.numel() for p in model.parameters())
    # The list is the model's state in parameter order, and a copy: changing it leaves the model alone.
    for array, parameter in zip(weights, model.parameters(), strict=True):
        assert np.array_equal(array, parameter.detach().numpy())
    weights[0][:] = 7.0
    assert not np.array_equal(get_weights(model)[0], weights[0])


def test_the_same_seed_gives_the_same_model_and_leaves_torch_random_state_alone() -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first, again, other = new_model(5), new_model(5), new_model(6)
    assert torch.equal(torch.rand(3), expected_next)
    assert _same(get_weights(first), get_weights(again))
    assert not _same(get_weights(first), get_weights(other))


def test_set_then_get_is_an_exact_round_trip() -> None:
    source = get_weights(new_model(1))
    target = new_model(2)
    set_weights(target, source)
    assert _same(get_weights(target), source)
    assert _same(get_weights(model_from_weights(source)), source)
    features = torch.from_numpy(np.random.default_rng(0).normal(size=(4, INPUT_SIZE)).astype(np.float32))
    with torch.no_grad():
        assert torch.equal(target(features), new_model(1)(features))


def _bad_weight_lists() -> list[tuple[str, list[np.ndarray]]]:
    good = get_weights(new_model(0))
    nan = [array.copy() for array in good]
    nan[2][0, 0] = np.nan
    infinite = [array.copy() for array in good]
    infinite[5][0] = np.inf
    return [
        ("one array too few", good[:-1]),
        ("one array too many", [*good, good[-1]]),
        ("transposed first layer", [good[0].T, *good[1:]]),
        ("arrays swapped", [good[1], good[0], *good[2:]]),
        ("NaN", nan),
        ("infinity", infinite),
    ]


@pytest.mark.parametrize(("case", "weights"), _bad_weight_lists(), ids=[c for c, _ in _bad_weight_lists()])
def test_malformed_weights_are_refused_and_leave_the_model_unchanged(
    case: str, weights: list[np.ndarray]
) -> None:
    model = new_model(3)
    before = get_weights(model)
    with pytest.raises(ValueError, match=r"weight array|expected \d+ weight arrays"):
        set_weights(model, weights)
    assert _same(get_weights(model), before)
    with pytest.raises(ValueError):
        check_weights(weights)


def test_a_foreign_model_is_not_exported_in_our_format() -> None:
    with pytest.raises(ValueError, match="not those of the valuation network"):
        get_weights(nn.Sequential(nn.Linear(INPUT_SIZE, 1)))


def test_opacus_accepts_the_network_and_its_wrapper_unwraps() -> None:
    model = new_model(4)
    ModuleValidator.validate(model, strict=True)  # raises for BatchNorm and other per-batch layers
    wrapped = GradSampleModule(model)
    assert all(key.startswith("_module.") for key in wrapped.state_dict())  # what get_weights must strip
    assert unwrap(wrapped) is model
    assert _same(get_weights(wrapped), get_weights(model))
    replacement = get_weights(new_model(9))
    set_weights(wrapped, replacement)
    assert _same(get_weights(model), replacement)


def test_the_network_scores_real_lens_rows() -> None:
    rows = read_rows(LENS_SAMPLE)[1][:200]
    features = torch.from_numpy(feature_matrix(rows, reference_year=2017))
    with torch.no_grad():
        scores = new_model(0)(features)
    assert scores.shape == (200, 1)
    assert torch.isfinite(scores).all()
    assert scores.std() > 0  # different rows get different values

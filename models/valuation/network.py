"""The federated valuation network and its wire format: a list of float32 arrays in one fixed order.

The network maps the 21 features of `models.valuation.features` to one value, the cohort-normalised citation
target of `models.valuation.target`: 21 -> 32 -> 16 -> 1 with ReLU between layers, about 1.3k parameters.
It holds only `Linear` layers, so Opacus can compute per-sample gradients for it (no BatchNorm, whose
statistics mix the examples of a batch and defeat per-example clipping).

Wire format. Nodes and the aggregator exchange weights as `list[np.ndarray]` (float32), one array per
tensor in `WEIGHT_NAMES` order, with the shapes of `weight_shapes()`. `get_weights` and `set_weights` are the
only crossings between that format and a torch module; `set_weights` refuses a list of the wrong length or
shape or with non-finite values, since the list arrives from another party.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from models.valuation.wire import HIDDEN_SIZES, INPUT_SIZE, WEIGHT_NAMES, weight_shapes

__all__ = [
    "HIDDEN_SIZES",
    "INPUT_SIZE",
    "WEIGHT_NAMES",
    "check_weights",
    "get_weights",
    "model_from_weights",
    "new_model",
    "set_weights",
    "unwrap",
    "weight_shapes",
]


# Opacus wraps the module it trains in a GradSampleModule whose state-dict keys gain this prefix.
_OPACUS_PREFIX = "_module."


def _layers() -> OrderedDict[str, nn.Module]:
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    width = INPUT_SIZE
    for index, hidden in enumerate(HIDDEN_SIZES, start=1):
        layers[f"hidden{index}"] = nn.Linear(width, hidden)
        layers[f"relu{index}"] = nn.ReLU()
        width = hidden
    layers["output"] = nn.Linear(width, 1)
    return layers


def new_model(seed: int) -> nn.Sequential:
    """A freshly initialised network (PyTorch's default Linear init), the same for the same seed.

    The seed is applied inside a forked RNG, so torch's global random state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(_layers())


def unwrap(model: nn.Module) -> nn.Module:
    """The plain network inside an Opacus `GradSampleModule` (or the model itself when it is not wrapped)."""
    inner = getattr(model, "_module", None)
    return inner if isinstance(inner, nn.Module) else model


def get_weights(model: nn.Module) -> list[np.ndarray]:
    """The model's weights in the wire format: float32 copies, one per tensor, in `WEIGHT_NAMES` order.

    Accepts the network or Opacus's wrapper around it (keys prefixed `_module.`). Raises ValueError when the
    model's tensors are not exactly those of this network, so a foreign model never leaves in our format.
    """
    state = {_strip_prefix(key): value for key, value in model.state_dict().items()}
    if set(state) != set(WEIGHT_NAMES):
        raise ValueError(
            f"the model's tensors {sorted(state)} are not those of the valuation network {list(WEIGHT_NAMES)}"
        )
    weights = [state[name].detach().cpu().numpy().astype(np.float32, copy=True) for name in WEIGHT_NAMES]
    for name, array, shape in zip(WEIGHT_NAMES, weights, weight_shapes(), strict=True):
        if array.shape != shape:
            raise ValueError(f"tensor {name} has shape {array.shape}, the valuation network has {shape}")
    return weights


def set_weights(model: nn.Module, weights: Sequence[np.ndarray]) -> None:
    """Load wire-format weights into the model (or into the network inside Opacus's wrapper).

    Guarantees the model holds exactly `weights` afterwards, or is left unchanged: raises ValueError when the
    list has the wrong length, an array has the wrong shape, or a value is NaN or infinite.
    """
    arrays = check_weights(weights)
    state = OrderedDict(zip(WEIGHT_NAMES, map(torch.from_numpy, arrays), strict=True))
    unwrap(model).load_state_dict(state, strict=True)


def model_from_weights(weights: Sequence[np.ndarray]) -> nn.Sequential:
    """A network holding `weights` (see `set_weights` for what is refused)."""
    model = new_model(0)  # the initial values are overwritten at once
    set_weights(model, weights)
    return model


def check_weights(weights: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Validated float32 copies of wire-format weights.

    Raises ValueError for a wrong number of arrays, a wrong shape, or a NaN / infinite value.
    """
    if len(weights) != len(WEIGHT_NAMES):
        raise ValueError(
            f"expected {len(WEIGHT_NAMES)} weight arrays ({', '.join(WEIGHT_NAMES)}), got {len(weights)}"
        )
    arrays: list[np.ndarray] = []
    for name, given, shape in zip(WEIGHT_NAMES, weights, weight_shapes(), strict=True):
        array = np.array(given, dtype=np.float32, copy=True)
        if array.shape != shape:
            raise ValueError(f"weight array {name} has shape {array.shape}, expected {shape}")
        if not np.isfinite(array).all():
            raise ValueError(f"weight array {name} holds NaN or infinite values")
        arrays.append(array)
    return arrays


def _strip_prefix(key: str) -> str:
    return key.removeprefix(_OPACUS_PREFIX)

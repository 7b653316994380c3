"""The valuation network's wire format, without torch: shapes, names, and the bytes form sent over gRPC.

Weights travel as one list of float32 arrays in `WEIGHT_NAMES` order (``network.py`` converts to and from a
torch module). Between a node and its Flower proxy they travel as bytes: the arrays' little-endian float32
values concatenated in that order. The proxy imports this module and no torch, so each per-message Flower
process starts fast.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.valuation.features import FEATURE_NAMES

__all__ = [
    "HIDDEN_SIZES",
    "INPUT_SIZE",
    "PARAMETER_COUNT",
    "WEIGHT_NAMES",
    "WireFormatError",
    "initial_weights",
    "weight_shapes",
    "weights_from_bytes",
    "weights_to_bytes",
]

INPUT_SIZE = len(FEATURE_NAMES)
HIDDEN_SIZES: tuple[int, ...] = (32, 16)
_FLOAT32 = np.dtype("<f4")


class WireFormatError(ValueError):
    """Weights that are not the valuation network's: wrong size, shape or non-finite values."""


def _layout() -> tuple[tuple[str, tuple[int, ...]], ...]:
    layout: list[tuple[str, tuple[int, ...]]] = []
    width = INPUT_SIZE
    for index, size in enumerate((*HIDDEN_SIZES, 1), start=1):
        name = "output" if index == len(HIDDEN_SIZES) + 1 else f"hidden{index}"
        layout += [(f"{name}.weight", (size, width)), (f"{name}.bias", (size,))]
        width = size
    return tuple(layout)


_LAYOUT = _layout()
WEIGHT_NAMES: tuple[str, ...] = tuple(name for name, _ in _LAYOUT)
PARAMETER_COUNT = sum(int(np.prod(shape)) for _, shape in _LAYOUT)


def weight_shapes() -> list[tuple[int, ...]]:
    """The shape of every array of the wire format, in `WEIGHT_NAMES` order."""
    return [shape for _, shape in _LAYOUT]


def weights_to_bytes(weights: Sequence[np.ndarray]) -> bytes:
    """The arrays as little-endian float32 bytes, concatenated. Raises WireFormatError for a wrong shape."""
    shapes = [np.shape(array) for array in weights]
    if shapes != weight_shapes():
        raise WireFormatError(f"weights have shapes {shapes}; the network's are {weight_shapes()}")
    return b"".join(np.ascontiguousarray(array, dtype=_FLOAT32).tobytes() for array in weights)


def weights_from_bytes(data: bytes) -> list[np.ndarray]:
    """The arrays from their bytes form (fresh, writable arrays).

    Raises WireFormatError when the length is not that of the network's parameters or a value is NaN or
    infinite (the bytes come from another party).
    """
    expected = PARAMETER_COUNT * _FLOAT32.itemsize
    if len(data) != expected:
        raise WireFormatError(
            f"weights are {len(data)} bytes; the valuation network's {PARAMETER_COUNT} float32 parameters "
            f"take {expected}"
        )
    flat = np.frombuffer(data, dtype=_FLOAT32).astype(np.float32)
    if not np.isfinite(flat).all():
        raise WireFormatError("weights hold NaN or infinite values")
    arrays, offset = [], 0
    for shape in weight_shapes():
        size = int(np.prod(shape))
        arrays.append(flat[offset : offset + size].reshape(shape))
        offset += size
    return arrays


def initial_weights(seed: int) -> list[np.ndarray]:
    """Fresh weights without torch, drawn as torch's `nn.Linear` draws them (uniform within
    +-1/sqrt(fan_in), weights and biases alike), so an aggregator needs no torch to start a job."""
    rng = np.random.default_rng(seed)
    arrays = []
    for name, shape in _LAYOUT:
        fan_in = shape[1] if name.endswith(".weight") else _fan_in_of_bias(name)
        bound = 1 / np.sqrt(fan_in)
        arrays.append(rng.uniform(-bound, bound, size=shape).astype(np.float32))
    return arrays


def _fan_in_of_bias(bias_name: str) -> int:
    layer = bias_name.removesuffix(".bias")
    return dict(_LAYOUT)[f"{layer}.weight"][1]

"""A job's final model on disk: an .npz of float32 arrays ``arr_0, arr_1, ...`` in wire-format order.

Written beside its final name and renamed into place by the job store, so a reader never sees half a model;
read back without unpickling anything.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

PARTIAL_SUFFIX = ".partial"


def check_weights(weights: Sequence[np.ndarray]) -> None:
    """Raise ValueError unless ``weights`` is a non-empty list of finite float32 arrays (the wire format)."""
    if not weights:
        raise ValueError("a model needs at least one weight array")
    for index, array in enumerate(weights):
        if not isinstance(array, np.ndarray) or array.dtype != np.float32:
            raise ValueError(f"weight {index} is not a float32 array (the wire format)")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"weight {index} holds NaN or infinite values")


def write_partial(path: Path, weights: Sequence[np.ndarray]) -> tuple[Path, str]:
    """Write ``weights`` durably to ``<path>.partial``; returns that path and the file's SHA-256 (hex)."""
    check_weights(weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    with partial.open("wb") as handle:
        np.savez(handle, *weights)
        handle.flush()
        os.fsync(handle.fileno())
    return partial, hashlib.sha256(partial.read_bytes()).hexdigest()


def load_model(path: Path) -> list[np.ndarray]:
    """The weights of a model file, in order (``allow_pickle=False``: a model file cannot run code)."""
    with np.load(path, allow_pickle=False) as archive:
        return [archive[f"arr_{index}"] for index in range(len(archive.files))]

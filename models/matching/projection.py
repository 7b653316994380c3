"""The projection head: a linear map from MiniLM's 384-d embeddings to `PROJECTION_DIM`, then unit norm.

Matching scores are dot products of projected unit vectors (cosines). The head is trained on human-rated
phrase pairs (`phrase_pairs.py`) so that those cosines follow the ratings better than raw MiniLM's, and it
shrinks what encrypted scoring costs (fewer slots, rotations and products per patent).

Choices, measured with ``python -m bench.matching_quality --tune`` (heads of 128 dimensions trained on the
train pairs less a tuning split of about 10%, scored on that split, mean of 2 seeds; Adam 1e-3, batch 256,
30 epochs; the valid pairs are not read) and seen again on the valid pairs by the full benchmark:
- Loss, per pair: squared error between the pair's cosine and its score plus `SCORE_OFFSET` (0.2). Pearson
  on the tuning split: offset 0 0.672, 0.1 0.682, 0.2 0.684, 0.3 0.679 (valid: 0.675 at 0, 0.687 at 0.2).
  Unrelated patent phrases keep a cosine near 0.25 under MiniLM; pulling them to 0 spends the head on that
  rather than on the order. A target of 2 x score - 1 (negative cosines) does not train (0.495).
  One squared error per pair keeps per-example clipping (DP-SGD) exact: Opacus's per-sample gradients of
  `torch.nn.Linear` on a (pairs, 2, 384) input equal each pair's own gradient (checked to 1e-7).
- No bias. A bias gained 0.003 (tuning 0.687 against 0.684, valid 0.690 against 0.687); left out so that
  `project` stays linear and the wire format one array. A candidate to revisit once DP training is measured.
- Initial weights: a seeded random orthogonal projection (`initial_weights`, numpy only, so an aggregator
  starts a job without torch). Round 0 of a federated job then scores about as raw MiniLM does: valid
  Pearson 0.548 (5 seeds, 0.543-0.552) against 0.559 raw and 0.537 for torch's default initialisation;
  trained, 0.684 against 0.681 (tuning split).

Wire format, as `models/valuation/wire.py`: the weights are one list of float32 arrays in `WEIGHT_NAMES`
order (today one array, (dim, 384)); as bytes, their little-endian float32 values concatenated. Importing
this module imports no torch: a consumer and a node project vectors with numpy alone (`project`). The torch
parts (`head_from_weights`, `pair_cosines`, `pair_losses`) import it when called.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.matching.embeddings import EMBEDDING_DIM

if TYPE_CHECKING:
    import torch

__all__ = [
    "INPUT_DIM",
    "PROJECTION_DIM",
    "SCORE_OFFSET",
    "WEIGHT_NAMES",
    "Projection",
    "ProjectionError",
    "WireFormatError",
    "head_from_weights",
    "initial_weights",
    "pair_cosines",
    "pair_losses",
    "parameter_count",
    "project",
    "weight_shapes",
    "weights_from_bytes",
    "weights_of_head",
    "weights_to_bytes",
]

INPUT_DIM = EMBEDDING_DIM
PROJECTION_DIM = 128
SCORE_OFFSET = 0.2
WEIGHT_NAMES: tuple[str, ...] = ("projection.weight",)
_FLOAT32 = np.dtype("<f4")
# A projected vector shorter than this cannot be given a direction reliably (float32 rounding is ~1e-7).
_MIN_NORM = 1e-6


class ProjectionError(ValueError):
    """Vectors that cannot be projected (wrong shape, non-finite values, a vector the head maps to 0), or
    weights that are not a head's (`WireFormatError`)."""


class WireFormatError(ProjectionError):
    """Weights that are not a projection head's: wrong size, shape, dimension or non-finite values."""


def _check_dim(dim: int) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= INPUT_DIM:
        raise WireFormatError(f"the projection dimension must be an int from 1 to {INPUT_DIM}, got {dim!r}")
    return dim


def weight_shapes(dim: int = PROJECTION_DIM) -> list[tuple[int, ...]]:
    """The shape of every array of the wire format, in `WEIGHT_NAMES` order. Raises WireFormatError for a
    dimension outside 1..INPUT_DIM."""
    return [(_check_dim(dim), INPUT_DIM)]


def parameter_count(dim: int = PROJECTION_DIM) -> int:
    """How many float32 values the head holds (49,152 at 128 dimensions)."""
    return sum(int(np.prod(shape)) for shape in weight_shapes(dim))


def weights_to_bytes(weights: Sequence[np.ndarray], dim: int = PROJECTION_DIM) -> bytes:
    """The arrays as little-endian float32 bytes, concatenated. Raises WireFormatError for a wrong shape."""
    shapes = [np.shape(array) for array in weights]
    if shapes != weight_shapes(dim):
        raise WireFormatError(f"weights have shapes {shapes}; a {dim}-d head's are {weight_shapes(dim)}")
    return b"".join(np.ascontiguousarray(array, dtype=_FLOAT32).tobytes() for array in weights)


def weights_from_bytes(data: bytes, dim: int | None = PROJECTION_DIM) -> list[np.ndarray]:
    """The arrays from their bytes form (fresh, writable arrays). `dim=None` takes the dimension from the
    length (a whole number of INPUT_DIM-wide float32 rows, 1 to INPUT_DIM of them).

    Raises WireFormatError when the length is not that of a `dim`-d head's parameters or a value is NaN or
    infinite (the bytes come from another party).
    """
    if dim is None:
        row_bytes = INPUT_DIM * _FLOAT32.itemsize
        rows, remainder = divmod(len(data), row_bytes)
        if remainder or not 1 <= rows <= INPUT_DIM:
            raise WireFormatError(
                f"weights are {len(data)} bytes; a projection head takes 1 to {INPUT_DIM} rows of "
                f"{row_bytes} bytes ({INPUT_DIM} float32 values each)"
            )
        dim = rows
    count = parameter_count(dim)
    expected = count * _FLOAT32.itemsize
    if len(data) != expected:
        raise WireFormatError(
            f"weights are {len(data)} bytes; a {dim}-d projection head's {count} float32 parameters "
            f"take {expected}"
        )
    flat = np.frombuffer(data, dtype=_FLOAT32).astype(np.float32)
    if not np.isfinite(flat).all():
        raise WireFormatError("weights hold NaN or infinite values")
    arrays, offset = [], 0
    for shape in weight_shapes(dim):
        size = int(np.prod(shape))
        arrays.append(flat[offset : offset + size].reshape(shape))
        offset += size
    return arrays


def initial_weights(seed: int, dim: int = PROJECTION_DIM) -> list[np.ndarray]:
    """A random projection with orthonormal rows, the same for the same seed (numpy only, no torch).

    Drawn as the Q factor of a Gaussian (INPUT_DIM, dim) matrix, signs fixed by R's diagonal so the draw is
    uniform over such projections. Raises WireFormatError for a dimension outside 1..INPUT_DIM.
    """
    rng = np.random.default_rng(seed)
    gaussian = rng.standard_normal((INPUT_DIM, _check_dim(dim)))
    q, r = np.linalg.qr(gaussian)
    q *= np.where(np.diag(r) < 0, -1.0, 1.0)
    return [np.ascontiguousarray(q.T, dtype=np.float32)]


def project(vectors: np.ndarray, weights: Sequence[np.ndarray]) -> np.ndarray:
    """The vectors mapped by the head and scaled to unit norm: float32, (n, dim) for (n, INPUT_DIM) input,
    (dim,) for one (INPUT_DIM,) vector. Inputs need not be unit vectors (only their direction counts).

    Raises WireFormatError for weights that are not a head's (wrong count, shape or non-finite values);
    ProjectionError for vectors of another width or rank, with non-finite values, or that the head maps to
    (nearly) zero, which has no direction to compare.
    """
    matrix = _weight_matrix(weights)
    array = np.asarray(vectors, dtype=np.float64)
    single = array.ndim == 1
    batch = array[None, :] if single else array
    if batch.ndim != 2 or batch.shape[1] != INPUT_DIM:
        raise ProjectionError(
            f"vectors must have shape (n, {INPUT_DIM}) or ({INPUT_DIM},), got {array.shape}"
        )
    if not np.isfinite(batch).all():
        raise ProjectionError("vectors hold NaN or infinite values")
    projected = batch @ matrix.T
    norms = np.linalg.norm(projected, axis=1, keepdims=True)
    scale = np.maximum(np.linalg.norm(batch, axis=1, keepdims=True), 1.0)
    degenerate = np.flatnonzero(norms[:, 0] <= _MIN_NORM * scale[:, 0])
    if degenerate.size:
        raise ProjectionError(
            f"{degenerate.size} vector(s) map to zero under the head (first at position {degenerate[0]}): "
            "a zero vector has no direction to score"
        )
    unit = (projected / norms).astype(np.float32)
    return unit[0] if single else unit


def _weight_matrix(weights: Sequence[np.ndarray]) -> np.ndarray:
    arrays = list(weights)
    if len(arrays) != len(WEIGHT_NAMES):
        raise WireFormatError(f"a projection head has {len(WEIGHT_NAMES)} array(s), got {len(arrays)}")
    matrix = np.asarray(arrays[0], dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != INPUT_DIM or not 1 <= matrix.shape[0] <= INPUT_DIM:
        raise WireFormatError(f"the head's weight must have shape (dim, {INPUT_DIM}), got {matrix.shape}")
    if not np.isfinite(matrix).all():
        raise WireFormatError("weights hold NaN or infinite values")
    return matrix


@dataclass(frozen=True, eq=False)
class Projection:
    """A checked projection head: what a consumer sends with its query and a node applies to its vectors.

    Holds read-only float32 weights. `digest` (SHA-256 of the bytes form, hex) names it, for example as a
    cache key for a node's encodings. Build it with `from_weights`, `from_bytes` or `initial`.
    """

    weights: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        checked = _weight_matrix(self.weights).astype(np.float32)
        checked.setflags(write=False)
        object.__setattr__(self, "weights", (checked,))

    @classmethod
    def from_weights(cls, weights: Sequence[np.ndarray]) -> Projection:
        """Raises WireFormatError for weights that are not a head's."""
        return cls(tuple(weights))

    @classmethod
    def from_bytes(cls, data: bytes) -> Projection:
        """The head from its bytes form, its dimension taken from the length. Raises WireFormatError."""
        return cls(tuple(weights_from_bytes(data, dim=None)))

    @classmethod
    def load(cls, path: Path) -> Projection:
        """The head in a file: a matching job's model as the coordinator serves it (.npz of float32 arrays,
        read without unpickling) or the bytes form (any other name). Raises WireFormatError, OSError."""
        if path.suffix == ".npz":
            try:
                with np.load(path, allow_pickle=False) as archive:
                    arrays = [archive[f"arr_{index}"] for index in range(len(archive.files))]
            except (ValueError, KeyError) as error:
                raise WireFormatError(f"{path} is not a model file of float32 arrays: {error}") from None
            return cls.from_weights(arrays)
        return cls.from_bytes(path.read_bytes())

    @classmethod
    def initial(cls, seed: int, dim: int = PROJECTION_DIM) -> Projection:
        """The seeded random orthogonal projection of `initial_weights`."""
        return cls(tuple(initial_weights(seed, dim)))

    @property
    def dimension(self) -> int:
        """The width of the projected vectors."""
        return int(self.weights[0].shape[0])

    @cached_property
    def digest(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    def to_bytes(self) -> bytes:
        return weights_to_bytes(self.weights, self.dimension)

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """`project(vectors, self.weights)`; raises as `project` does."""
        return project(vectors, self.weights)


def head_from_weights(weights: Sequence[np.ndarray]) -> torch.nn.Linear:
    """A trainable torch head (`Linear(INPUT_DIM, dim, bias=False)`) holding a copy of the weights.

    Raises WireFormatError as `project` does.
    """
    import torch

    matrix = _weight_matrix(weights)
    head = torch.nn.Linear(INPUT_DIM, matrix.shape[0], bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(matrix.astype(np.float32)))
    return head


def weights_of_head(head: torch.nn.Module) -> list[np.ndarray]:
    """The head's weights in the wire format (float32 copies). Accepts an Opacus `GradSampleModule` around
    the head. Raises WireFormatError when the module is not a bias-free `Linear(INPUT_DIM, dim)`."""
    import torch

    inner = getattr(head, "_module", head)
    if not isinstance(inner, torch.nn.Linear) or inner.bias is not None or inner.in_features != INPUT_DIM:
        raise WireFormatError(f"the module is not a bias-free Linear({INPUT_DIM}, dim) projection head")
    weights = [inner.weight.detach().cpu().numpy().astype(np.float32, copy=True)]
    _weight_matrix(weights)
    return weights


def pair_cosines(head: torch.nn.Module, pairs: torch.Tensor) -> torch.Tensor:
    """The cosine of each pair's two projected vectors: `pairs` is (n, 2, INPUT_DIM), the result (n,).

    Both phrases of all pairs go through the head in one call, so Opacus sees one input per example.
    """
    import torch

    projected = torch.nn.functional.normalize(head(pairs), dim=-1)
    return (projected[:, 0] * projected[:, 1]).sum(dim=-1)


def pair_losses(head: torch.nn.Module, pairs: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """One loss per pair, (n,): (cosine - (score + SCORE_OFFSET))². Reduce with `.mean()` (or `.sum()` for
    Opacus with ``loss_reduction="sum"``)."""
    return (pair_cosines(head, pairs) - (scores + SCORE_OFFSET)) ** 2

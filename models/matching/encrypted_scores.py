"""A node's patents scored against an encrypted query: s = P q with packed plaintext-ciphertext products.

The consumer encrypts its unit query q (d values) replicated over all S slots (`crypto.ckks.replicate`).
The node keeps, per block of 2 S patents, CKKS plaintexts of the block's generalized diagonals, encoded
once (`PackedPatents.encode`), and answers every query with one ciphertext per block. Only the consumer
decrypts (`decrypt_scores`).

CKKS slots hold complex numbers, and the query is real: a plaintext slot a + ib times the query's slot x
gives ax + ibx. So the first S patents of a block go into the real parts of its diagonals and the next S
into the imaginary parts, and one product scores both: slot i of a block's result holds patent i's score
in its real part and patent S + i's in its imaginary part. That halves the products, rotations, response
bytes and cache per patent.

The maths, per half-block (rows i = 0..S-1, zero-padded; D = padded dimension, a power of two dividing S):
    diag_j[i] = P[i, (i + j) mod D]                      j = 0..D-1
    score[i]  = sum_j diag_j[i] * rot_j(q_rep)[i]        rot_j: rotate the slots left by j
With baby-step giant-step, D = b * g and j = k * b + t:
    score     = sum_k rot_kb( sum_t roll(diag_kb+t, kb) * rot_t(q_rep) )
where roll(., kb) rotates right by kb so that the giant rotation puts it back; the giant sum runs in Horner
form, inner_0 + rot_b(inner_1 + rot_b(inner_2 + ...)), and the baby rotations are chained rotations by
one, so the consumer sends Galois keys for two steps only: 1 and b (`rotation_steps`).

Per query: b - 1 rotations of the query (shared by every block). Per block: D products, g rescales (each
inner sum is rescaled before its giant rotation, so the rotations run one level down, on the smaller
ciphertext) and g - 1 rotations. The result is at the last level, the smallest form that decrypts.

A dimension that is not a power of two is zero-padded (384 -> 512) and costs what the padded one costs.
A consumer gains nothing by sending a query that is not the replicated real vector: every slot still gives
it two real linear functions of two patents' vectors, one per patent, as an honest query does.
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tenseal.sealapi as seal

from crypto.ckks import (
    CkksInputError,
    CkksParameters,
    ConsumerKeys,
    EvaluationContext,
    padded_dimension,
    replicate,
)

__all__ = [
    "MATCHING_PARAMETERS",
    "MAX_DIMENSION",
    "MAX_NOISE_STD",
    "PackedPatents",
    "ScoreTiming",
    "baby_giant_split",
    "decrypt_scores",
    "encrypt_query",
    "rotation_steps",
]

# The set this kernel is sized for (one rescale); a node refuses match queries under any other allowed set.
MATCHING_PARAMETERS = CkksParameters()
# 512 padded values take 512 plaintexts per block of patents: about 64 MB of cache per 8,192 patents.
MAX_DIMENSION = 512
# Scores of unit vectors lie in [-1, 1]; noise ten times that range hides them entirely and stays far inside
# what the last modulus holds at the scale (|value| < 2^19 with 60 bits at 2^40).
MAX_NOISE_STD = 10.0
# Rows must be unit vectors or shorter: the scores' accuracy (about 1e-6) is absolute, not relative.
_NORM_TOLERANCE = 1e-3


def baby_giant_split(dimension: int) -> tuple[int, int]:
    """(b, g) for a (padded) dimension D = b * g, with b the power of two nearest above sqrt(D)."""
    width = padded_dimension(dimension)
    baby = 1 << math.ceil(math.log2(width) / 2)
    return baby, width // baby


def rotation_steps(dimension: int) -> tuple[int, ...]:
    """The rotation steps whose Galois keys the consumer must generate for queries of `dimension` values."""
    baby, giant = baby_giant_split(dimension)
    return tuple(step for step, needed in ((1, baby > 1), (baby, giant > 1)) if needed)


def encrypt_query(keys: ConsumerKeys, query: np.ndarray) -> bytes:
    """The consumer's query, replicated over the slots and encrypted. Raises CkksInputError for a vector
    that is not 1-D, not finite, or longer than MAX_DIMENSION."""
    vector = np.asarray(query, dtype=np.float64)
    if vector.ndim == 1 and vector.size > MAX_DIMENSION:
        raise CkksInputError(f"a query has at most {MAX_DIMENSION} values, this one {vector.size}")
    return keys.encrypt(replicate(vector, keys.parameters.slots))


@dataclass
class ScoreTiming:
    """Seconds spent by one `score` call, by part; pass a fresh one to `score` to have it filled in.

    `clock` is wall time by default; a benchmark on a shared machine passes `time.thread_time` to count
    only the CPU the scoring thread itself used.
    """

    clock: Callable[[], float] = field(default=time.perf_counter, repr=False)
    load_s: float = 0.0  # query bytes -> checked ciphertext
    baby_s: float = 0.0  # once per query: the b - 1 baby rotations
    blocks_s: float = 0.0  # per block: products, additions, rescales, giant rotations
    finish_s: float = 0.0  # per block: noise, switch to the last level, serialize
    blocks: int = 0

    @property
    def total_s(self) -> float:
        return self.load_s + self.baby_s + self.blocks_s + self.finish_s


class PackedPatents:
    """A node's patent vectors as cached CKKS plaintexts: the pre-rotated diagonals of each block of
    `block_size` (2 x slots) patents, encoded at the first data level. Made by `encode`; scores any
    consumer's query with these parameters."""

    def __init__(
        self, parameters: CkksParameters, dimension: int, count: int, blocks: list[list[list[seal.Plaintext]]]
    ) -> None:
        """Use `encode`."""
        self.parameters = parameters
        self.dimension = dimension
        self.count = count
        self.baby, self.giant = baby_giant_split(dimension)
        self.block_size = 2 * parameters.slots
        self._blocks = blocks

    @classmethod
    def encode(cls, context: EvaluationContext, vectors: np.ndarray) -> PackedPatents:
        """Encode `vectors` (n x d, unit rows) for scoring. Only the context's parameters and encoder are
        used, so `EvaluationContext.keyless(parameters)` will do.

        Raises CkksInputError for an array that is not 2-D with at least one row, values that are NaN or
        infinite, a row longer than unit length, or d above MAX_DIMENSION or the slot count.
        """
        matrix = np.asarray(vectors, dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
            raise CkksInputError(
                f"patent vectors must be an n x d array with n, d >= 1, not shape {matrix.shape}"
            )
        count, dimension = matrix.shape
        slots = context.parameters.slots
        width = padded_dimension(dimension)
        if dimension > MAX_DIMENSION or width > slots:
            raise CkksInputError(
                f"patent vectors have {dimension} dimensions; at most {min(MAX_DIMENSION, slots)} are packed"
            )
        if not np.isfinite(matrix).all():
            raise CkksInputError("patent vectors hold NaN or infinite values")
        longest = float(np.linalg.norm(matrix, axis=1).max())
        if longest == 0:
            raise CkksInputError("patent vectors are all zero: there is nothing to score")
        if longest > 1 + _NORM_TOLERANCE:
            raise CkksInputError(
                f"patent vectors must be unit vectors (or shorter); the longest has norm {longest:.4g}"
            )
        baby, giant = baby_giant_split(dimension)
        blocks = []
        for start in range(0, count, 2 * slots):
            block = np.zeros((2 * slots, width))
            part = matrix[start : start + 2 * slots]
            block[: len(part), :dimension] = part
            blocks.append(_encode_block(context, block[:slots] + 1j * block[slots:], baby, giant))
        return cls(context.parameters, dimension, count, blocks)

    @property
    def block_count(self) -> int:
        return len(self._blocks)

    def __repr__(self) -> str:
        return (
            f"PackedPatents(count={self.count}, dimension={self.dimension}, blocks={self.block_count}, "
            f"memory={self.memory_bytes / 2**20:.0f} MiB)"
        )

    @property
    def memory_bytes(self) -> int:
        """Bytes held by the cached plaintexts' coefficients."""
        return sum(
            plain.coeff_count() * 8 for block in self._blocks for row in block for plain in row if plain
        )

    def score(
        self,
        query: bytes | seal.Ciphertext,
        context: EvaluationContext,
        *,
        query_dimension: int,
        noise_std: float = 0.0,
        timing: ScoreTiming | None = None,
    ) -> list[bytes]:
        """Every patent's score against the encrypted query: one serialized ciphertext per block of
        `block_size` patents, at the last level; `decrypt_scores` reads them.

        `query_dimension` is the dimension the consumer says it encrypted (it cannot be read under
        encryption); a query of another dimension would give meaningless scores, so it is refused.
        `noise_std > 0` adds Gaussian noise of that standard deviation to every score under encryption
        (both parts of every slot; for agreements that oblige noisy scores). It also drowns the kernel's
        own CKKS error, which otherwise depends faintly on the node's vectors.

        Raises CkksInputError for a context with other parameters, a dimension that differs from the
        patents', a missing rotation key (named), a query that `EvaluationContext.load_ciphertext` refuses,
        or a noise_std that is negative, not finite or above MAX_NOISE_STD.
        """
        if context.parameters != self.parameters:
            raise CkksInputError(
                f"these patents were encoded for {self.parameters}, not {context.parameters}"
            )
        if query_dimension != self.dimension:
            raise CkksInputError(
                f"the query has {query_dimension!r} dimensions; "
                f"this node's patent vectors have {self.dimension}"
            )
        if (
            isinstance(noise_std, bool)
            or not isinstance(noise_std, int | float)
            or not 0 <= noise_std <= MAX_NOISE_STD
        ):
            raise CkksInputError(f"noise_std must be a number in 0..{MAX_NOISE_STD}, not {noise_std!r}")
        context.require_rotations(rotation_steps(self.dimension))
        timing = timing if timing is not None else ScoreTiming()
        clock = timing.clock
        started = clock()
        if isinstance(query, seal.Ciphertext):
            context.check_ciphertext(query)
        else:
            query = context.load_ciphertext(query)
        loaded = clock()
        rotations = self._baby_rotations(query, context)
        timing.load_s += loaded - started
        timing.baby_s += clock() - loaded
        noise = np.random.default_rng(secrets.randbits(128)) if noise_std > 0 else None
        results = []
        for block in self._blocks:
            started = clock()
            total = self._block_scores(block, rotations, context)
            finishing = clock()
            if noise is not None:
                draws = noise.normal(0.0, noise_std, (2, self.parameters.slots))
                _add_noise(total, context, draws[0] + 1j * draws[1])
            results.append(context.ciphertext_bytes(total))
            timing.blocks_s += finishing - started
            timing.finish_s += clock() - finishing
            timing.blocks += 1
        return results

    def _baby_rotations(self, query: seal.Ciphertext, context: EvaluationContext) -> list[seal.Ciphertext]:
        """rot_t(query) for t = 0..b-1, each a rotation by one of the previous (only the step-1 key)."""
        rotations = [query]
        for _ in range(1, self.baby):
            rotated = seal.Ciphertext()
            context.evaluator.rotate_vector(rotations[-1], 1, context.galois_keys, rotated)
            rotations.append(rotated)
        return rotations

    def _block_scores(
        self,
        block: list[list[seal.Plaintext | None]],
        rotations: list[seal.Ciphertext],
        context: EvaluationContext,
    ) -> seal.Ciphertext:
        evaluator = context.evaluator
        product = seal.Ciphertext()
        inner_sums: list[seal.Ciphertext | None] = []
        for row in block:
            inner = None
            for rotated, plain in zip(rotations, row, strict=True):
                if plain is None:  # an all-zero diagonal adds nothing
                    continue
                if inner is None:
                    inner = seal.Ciphertext()
                    evaluator.multiply_plain(rotated, plain, inner)
                else:
                    evaluator.multiply_plain(rotated, plain, product)
                    evaluator.add_inplace(inner, product)  # every product has scale 2^(2 * scale_bits)
            if inner is not None:
                # The same rescale for every inner sum: equal scales, so the giant sums may add them.
                evaluator.rescale_to_next_inplace(inner)
            inner_sums.append(inner)
        # Horner over the giant steps; a missing inner sum is zero, and so is a rotated zero.
        total = None
        for inner in reversed(inner_sums):
            if total is not None:
                evaluator.rotate_vector_inplace(total, self.baby, context.galois_keys)
            if inner is not None:
                if total is None:
                    total = inner
                else:
                    evaluator.add_inplace(total, inner)
        if total is None:  # encode refuses a block without any non-zero value
            raise RuntimeError("a block of patent vectors encoded to no plaintext")
        return total


def _encode_block(
    context: EvaluationContext, block: np.ndarray, baby: int, giant: int
) -> list[list[seal.Plaintext | None]]:
    """Plaintexts [k][t] of roll(diag_{k*b+t}, k*b) for one zero-padded block (slots x D, complex: the first
    half of the block's patents in the real parts, the second in the imaginary parts). An all-zero diagonal
    (few patents with a dimension padded to D) is None: SEAL refuses a product with a zero plaintext, whose
    result would be a transparent ciphertext."""
    slots, width = block.shape
    rows = np.arange(slots)
    level, scale = context.first_parms_id, context.parameters.scale
    encoded = []
    for k in range(giant):
        row = []
        for t in range(baby):
            diagonal = block[rows, (rows + k * baby + t) % width]
            if not diagonal.any():
                row.append(None)
                continue
            plain = seal.Plaintext()
            # Plaintexts must be at the query's level (parms_id) for multiply_plain.
            context.encoder.encode(np.roll(diagonal, k * baby).tolist(), level, scale, plain)
            row.append(plain)
        encoded.append(row)
    return encoded


def _add_noise(ciphertext: seal.Ciphertext, context: EvaluationContext, noise: np.ndarray) -> None:
    plain = seal.Plaintext()
    # Encoded at the result's own level and exact scale (2^80 / q1 after the rescale), so they add.
    context.encoder.encode(noise.tolist(), ciphertext.parms_id(), ciphertext.scale, plain)
    context.evaluator.add_plain_inplace(ciphertext, plain)


def decrypt_scores(keys: ConsumerKeys, blocks: list[bytes], count: int) -> np.ndarray:
    """The consumer's scores for `count` patents from a node's blocks (in order).

    Raises TypeError unless `keys` are the consumer's ConsumerKeys (decrypting needs the secret key; an
    EvaluationContext has none), CkksInputError when the number of blocks does not match `count` or a block
    is not a ciphertext for these parameters.
    """
    if not isinstance(keys, ConsumerKeys):
        raise TypeError(
            f"decrypting needs the consumer's ConsumerKeys (the secret key), not {type(keys).__name__}"
        )
    slots = keys.parameters.slots
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise CkksInputError(f"count must be a positive int, not {count!r}")
    expected = -(-count // (2 * slots))
    if len(blocks) != expected:
        raise CkksInputError(
            f"{count} scores come in {expected} block(s) of {2 * slots}; {len(blocks)} arrived"
        )
    parts = []
    for block in blocks:
        values = keys.decrypt_complex(block, slots)
        parts += [values.real, values.imag]
    return np.concatenate(parts)[:count]

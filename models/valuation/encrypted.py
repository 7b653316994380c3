"""Encrypted valuation: a `PolynomialHead` evaluated on a consumer's encrypted features; only it decrypts.

The consumer encrypts its patent's 21 features (`encrypt_features`, clipped into the head's bounds, zero-
padded to 32 and repeated over all 8,192 slots) under its own key (`valuation_keys`: Galois keys for a few
rotation steps and a relinearization key). The evaluating party (the coordinator holding the exported
model) encodes the head once (`EncryptedValuation.encode`) and answers each query with one ciphertext
(`evaluate`) whose slot 0 holds the value and whose other slots hold 0; it never holds a key that decrypts.
The consumer reads the value with `decrypt_value`.

Packing: the query repeated in slots, every layer a diagonal matrix-vector product in baby-step giant-step
form (as models/matching/encrypted_scores.py does for patents). Input and hidden vectors are 32 wide, so a
layer costs 32 plaintext products and 7 + 3 rotations (baby steps chained by 1, giant steps of 8) however
its rows are laid out, and its output comes out repeated in slots, ready for the next layer without any
masking or re-packing (each costs a level; one slot block per unit with rotate-and-sum would need both).

Activations: each unit's polynomial p(z) is stored as K * f_1(z) * ... * f_B(z), with B = 2 factors for
degree 2 and B = 4 for degree 3 or 4, each factor affine: f(z) = (z - r) / rho for a (possibly complex)
root r of p, rho the largest |z - r| on the unit's interval, so |f| <= 1 there; a degree below B leaves
constant factors 1. A layer's rows are then its units' factors (row b * 32 + k = factor b of unit k, the
bias included), so one matrix-vector product gives all B factors of all units, side by side in blocks of
32. Multiplying the ciphertext by itself rotated by 64, then the result by itself rotated by 32 (or once by
32 for B = 2), leaves in every block the product of the four (two) factors: one level per doubling and 2
rotations per layer. K moves into the next layer's weights (the output layer's for the second). The
polynomial is never expanded into powers of z: every intermediate value has modulus at most 1, which keeps
CKKS's absolute error small (about 1e-7 on the value, measured), and any degree up to 4 costs the same.

Levels (rescales): layer 1, activation (1 or 2), layer 2, activation (1 or 2), output layer: 7 for degrees
3 and 4, 5 for degree 2, which `crypto.ckks.VALUATION_PARAMETERS` provides (a degree-2 head switches the
query two levels down on arrival, so each of its operations is cheaper). The output layer is a single row
of diagonals that are non-zero in slot 0 only, so it leaves the value in slot 0 and 0 elsewhere (up to
CKKS noise) without a masking level: a consumer who sends some other vector than a repeated feature vector
still gets one number per query, one polynomial function of what it sent. The value must lie within
+-2^9 to decrypt (the last prime has 50 bits at scale 2^40); features clipped into the bounds keep a head
with intervals from the bounds far inside that.

Per query: 32 rotations (30 for degree 2), 4 (2) ciphertext products and 80 plaintext products. The
plaintexts are encoded once, at the level and scale where they are used (`memory_bytes`). A budget on
queries limits what a consumer learns about the weights, as for matching: each answer is one value of a
polynomial of its own input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tenseal.sealapi as seal

from crypto.ckks import (
    VALUATION_PARAMETERS,
    CkksInputError,
    CkksParameters,
    ConsumerKeys,
    EvaluationContext,
    replicate,
)
from models.valuation.he_head import (
    DEFAULT_DEGREE,
    DEFAULT_FEATURE_BOUNDS,
    SUPPORTED_DEGREES,
    Activation,
    FeatureBounds,
    HeadError,
    PolynomialHead,
)
from models.valuation.wire import HIDDEN_SIZES, INPUT_SIZE

__all__ = [
    "WIDTH",
    "EncryptedValuation",
    "decrypt_value",
    "encrypt_features",
    "factor_blocks",
    "rotation_steps",
    "valuation_keys",
]

WIDTH = 32  # inputs (21, zero-padded) and every hidden layer (16 padded with units of value 0)
_BABY = 8  # baby steps per giant step: 32 = 8 x 4
_NEGLIGIBLE = 1e-12  # a coefficient whose term stays below this share of the largest on the interval is 0
_FACTOR_CHECK = 1e-6  # relative: the factored polynomial must equal the fitted one to this


def factor_blocks(degree: int) -> int:
    """How many affine factors each unit's polynomial is stored as: 2 for degree 2, 4 for 3 and 4."""
    if degree not in SUPPORTED_DEGREES:
        raise CkksInputError(f"the head's degree must be one of {SUPPORTED_DEGREES}, not {degree!r}")
    return 2 if degree == 2 else 4


def rotation_steps(degree: int = DEFAULT_DEGREE) -> tuple[int, ...]:
    """The rotation steps whose Galois keys the consumer sends for a head of `degree`."""
    blocks = factor_blocks(degree)
    return (1, _BABY, *(WIDTH * half for half in (1, 2) if half < blocks))


def valuation_keys(degree: int = DEFAULT_DEGREE) -> ConsumerKeys:
    """Fresh consumer keys for encrypted valuation: VALUATION_PARAMETERS, the rotations a head of `degree`
    needs and a relinearization key. Raises CkksInputError for an unsupported degree."""
    return ConsumerKeys.generate(VALUATION_PARAMETERS, rotation_steps(degree), relinearization=True)


def encrypt_features(
    keys: ConsumerKeys, features: np.ndarray, *, bounds: FeatureBounds = DEFAULT_FEATURE_BOUNDS
) -> bytes:
    """The consumer's query: its patent's features (`extract_features` at the job's reference year) clipped
    into the head's `bounds`, zero-padded to 32, repeated over the slots and encrypted.

    Clipping is what keeps every hidden unit inside the interval its polynomial was fitted on; the bounds
    come with the model. Raises TypeError unless `keys` are ConsumerKeys, CkksInputError for keys of other
    parameters than VALUATION_PARAMETERS or features that are not INPUT_SIZE finite numbers.
    """
    if not isinstance(keys, ConsumerKeys):
        raise TypeError(f"encrypting needs the consumer's ConsumerKeys, not {type(keys).__name__}")
    _require_valuation_parameters(keys.parameters, "the consumer's keys")
    vector = np.asarray(features, dtype=np.float64)
    if vector.shape != (INPUT_SIZE,):
        raise CkksInputError(f"a patent has {INPUT_SIZE} features, this vector has shape {vector.shape}")
    if not np.isfinite(vector).all():
        raise CkksInputError("the features hold NaN or infinite values")
    return keys.encrypt(replicate(bounds.clip(vector), keys.parameters.slots))


def decrypt_value(keys: ConsumerKeys, result: bytes) -> float:
    """The value in an answer (slot 0). Raises TypeError unless `keys` are ConsumerKeys (an
    EvaluationContext has no secret key), CkksInputError for bytes that are not a ciphertext for them."""
    if not isinstance(keys, ConsumerKeys):
        raise TypeError(
            f"decrypting needs the consumer's ConsumerKeys (the secret key), not {type(keys).__name__}"
        )
    return float(keys.decrypt(result, 1)[0])


@dataclass(frozen=True)
class _Layer:
    """One matrix-vector product: plaintexts [giant k][baby t] and the bias plaintext."""

    plaintexts: list[list[seal.Plaintext]]
    bias: seal.Plaintext


class EncryptedValuation:
    """A head's weights as cached CKKS plaintexts for VALUATION_PARAMETERS; made by `encode`, evaluates
    any consumer's query."""

    def __init__(
        self,
        parameters: CkksParameters,
        degree: int,
        layers: list[_Layer],
        start: list[int],
        memory_bytes: int,
    ) -> None:
        """Use `encode`."""
        self._start = start  # the level the kernel starts at (below the first when it needs fewer levels)
        self.parameters = parameters
        self.degree = degree
        self.blocks = factor_blocks(degree)
        self.rotation_steps = rotation_steps(degree)
        self.memory_bytes = memory_bytes
        self._layers = layers

    def __repr__(self) -> str:
        return (
            f"EncryptedValuation(degree={self.degree}, rotation_steps={self.rotation_steps}, "
            f"memory={self.memory_bytes / 2**20:.0f} MiB)"
        )

    @classmethod
    def encode(cls, head: PolynomialHead, context: EvaluationContext) -> EncryptedValuation:
        """Encode `head` for evaluation. Only the context's parameters and encoder are used, so
        `EvaluationContext.keyless(VALUATION_PARAMETERS)` will do.

        Raises CkksInputError for a context of other parameters, HeadError for a head whose polynomials do
        not factor to within 1e-9 (not expected for a fitted head).
        """
        _require_valuation_parameters(context.parameters, "the context")
        blocks = factor_blocks(head.degree)
        schedule = _Schedule(context, levels=3 + 2 * (blocks.bit_length() - 1))
        start = schedule.parms_id
        weights = [np.asarray(array, dtype=np.float64) for array in head.weights]
        layers, carry = [], np.ones(INPUT_SIZE)  # carry: each input's K, moved into the next layer's weights
        for index, activation in enumerate(head.activations):
            weight, bias = weights[2 * index] * carry, weights[2 * index + 1]
            rows, biases, carry = _factor_rows(weight, bias, activation, blocks)
            layers.append(_encode_matrix(schedule, rows, biases))
            for _ in range(blocks.bit_length() - 1):  # the activation's doublings
                schedule.square()
        output = np.zeros((1, WIDTH))
        output[0, : HIDDEN_SIZES[-1]] = weights[-2][0] * carry
        layers.append(_encode_output_row(schedule, output[0], float(weights[-1][0])))
        memory = sum(
            plain.coeff_count() * 8
            for layer in layers
            for plain in [layer.bias, *(plain for row in layer.plaintexts for plain in row)]
        )
        return cls(context.parameters, head.degree, layers, start, memory)

    def evaluate(self, query: bytes | seal.Ciphertext, context: EvaluationContext) -> bytes:
        """The head's value for the encrypted features, as one ciphertext at the last level (value in slot
        0, the other slots 0), for `decrypt_value`.

        Raises CkksInputError for a context of other parameters, a missing rotation key (named) or
        relinearization key, or a query that `EvaluationContext.load_ciphertext` refuses (not a ciphertext
        for these parameters, not at the first level, not at the scale, too large).
        """
        _require_valuation_parameters(context.parameters, "the context")
        context.require_rotations(self.rotation_steps)
        relin_keys = context.relin_keys
        if isinstance(query, seal.Ciphertext):
            context.check_ciphertext(query)
            state = query
        else:
            state = context.load_ciphertext(query)
        if state.parms_id() != self._start:  # levels this head does not use: every operation gets cheaper
            target = seal.Ciphertext()
            context.evaluator.mod_switch_to(state, self._start, target)
            state = target
        for layer in self._layers[:-1]:
            state = _matrix_vector(context, layer, state)
            for step in (WIDTH * half for half in (2, 1) if half < self.blocks):
                rotated = seal.Ciphertext()
                context.evaluator.rotate_vector(state, step, context.galois_keys, rotated)
                context.evaluator.multiply_inplace(state, rotated)
                context.evaluator.relinearize_inplace(state, relin_keys)
                context.evaluator.rescale_to_next_inplace(state)
        state = _matrix_vector(context, self._layers[-1], state)
        return context.ciphertext_bytes(state)


class _Schedule:
    """Where the evaluation stands when each plaintext is used: the level (parms_id) and the ciphertext's
    scale, known in advance from the primes, so every plaintext is encoded once at the right ones."""

    def __init__(self, context: EvaluationContext, levels: int) -> None:
        self.context = context
        self.levels = []
        data = context.parameters.seal_context().first_context_data()
        while data is not None:
            self.levels.append((data.parms_id(), float(data.parms().coeff_modulus()[-1].value())))
            data = data.next_context_data()
        if levels > len(self.levels) - 1:
            raise CkksInputError(
                f"the head needs {levels} levels; {context.parameters} has {len(self.levels) - 1}"
            )
        self.index = len(self.levels) - 1 - levels  # into self.levels: where the kernel starts
        self.scale = context.parameters.scale

    @property
    def parms_id(self) -> list[int]:
        return self.levels[self.index][0]

    @property
    def prime(self) -> float:
        """The prime the next rescale drops: the scale a multiplying plaintext is encoded at, so the
        rescale gives back the ciphertext's scale."""
        return self.levels[self.index][1]

    # The scales are computed as SEAL computes them (product, then division by the dropped prime, in
    # doubles), so a bias encoded at `scale` matches the ciphertext's scale exactly, as addition requires.
    def rescale_plain(self) -> None:
        """After a product with plaintexts encoded at `prime`, and the rescale."""
        self.scale = self.scale * self.prime / self.prime
        self.index += 1

    def square(self) -> None:
        """After a product of two ciphertexts at the current scale, and the rescale."""
        self.scale = self.scale * self.scale / self.prime
        self.index += 1

    def encode(self, values: np.ndarray, scale: float) -> seal.Plaintext:
        plain = seal.Plaintext()
        self.context.encoder.encode(values.tolist(), self.parms_id, scale, plain)
        return plain


def _factor_rows(
    weight: np.ndarray, bias: np.ndarray, activation: Activation, blocks: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A layer's rows and biases in factor form (blocks * 32 rows over 32 columns), and each unit's K."""
    units, inputs = weight.shape
    rows = np.zeros((blocks * WIDTH, WIDTH))
    biases = np.zeros(blocks * WIDTH, dtype=np.complex128)
    scales = np.zeros(units)
    for block in range(blocks):
        biases[block * WIDTH + units : (block + 1) * WIDTH] = 1.0  # padded units: constant factors
    for unit in range(units):
        coefficients = activation.coefficients[unit]
        low, high = float(activation.low[unit]), float(activation.high[unit])
        scale, slopes, offsets = _factor(coefficients, low, high, blocks)
        scales[unit] = scale
        for block in range(blocks):
            rows[block * WIDTH + unit, :inputs] = slopes[block] * weight[unit]
            biases[block * WIDTH + unit] = slopes[block] * bias[unit] + offsets[block]
    return rows, biases, scales


def _factor(
    coefficients: np.ndarray, low: float, high: float, blocks: int
) -> tuple[float, np.ndarray, np.ndarray]:
    """(K, slopes, offsets) with p(z) = K * prod_b (slopes[b] * z + offsets[b]) and every factor of modulus
    at most 1 on [low, high]. Raises HeadError if the product does not reproduce p."""
    reach = max(abs(low), abs(high), 1e-300)
    sizes = np.abs(coefficients) * reach ** np.arange(len(coefficients))
    slopes, offsets = np.zeros(blocks), np.ones(blocks, dtype=np.complex128)
    if sizes.max() == 0:
        return 0.0, slopes, offsets
    degree = int(np.flatnonzero(sizes > _NEGLIGIBLE * sizes.max())[-1])
    scale = complex(coefficients[degree])
    if degree:
        for index, root in enumerate(np.polynomial.polynomial.polyroots(coefficients[: degree + 1])):
            rho = max(abs(low - root), abs(high - root), 1e-300)
            slopes[index], offsets[index] = 1.0 / rho, -root / rho
            scale *= rho
    grid = np.linspace(low, high, 65)
    product = scale * np.prod(slopes[:, None] * grid + offsets[:, None], axis=0)
    expected = np.polynomial.polynomial.polyval(grid, coefficients)
    if np.abs(product - expected).max() > _FACTOR_CHECK * max(1.0, np.abs(expected).max()):
        raise HeadError(f"a polynomial with coefficients {coefficients} does not factor accurately")
    return float(scale.real), slopes, offsets


def _encode_matrix(schedule: _Schedule, rows: np.ndarray, biases: np.ndarray) -> _Layer:
    """Plaintexts [k][t] of roll(diag_{8k+t}, 8k), diag_j[i] = rows[i mod period, (i + j) mod 32] over the
    slots, at the current level and scale `prime`; the bias at the next level and the current scale."""
    period = rows.shape[0]
    slots = schedule.context.parameters.slots
    index = np.arange(slots)
    plaintexts = []
    for giant in range(WIDTH // _BABY):
        row = []
        for baby in range(_BABY):
            diagonal = rows[index % period, (index + giant * _BABY + baby) % WIDTH]
            row.append(schedule.encode(np.roll(diagonal, giant * _BABY), schedule.prime))
        plaintexts.append(row)
    schedule.rescale_plain()
    return _Layer(plaintexts, schedule.encode(np.tile(biases, slots // period), schedule.scale))


def _encode_output_row(schedule: _Schedule, weights: np.ndarray, bias: float) -> _Layer:
    """The output layer: diag_j = weights[j] in slot 0 only, so the value lands in slot 0 and nowhere
    else; giant steps past the last non-zero weight (the padded units) are left out."""
    slots = schedule.context.parameters.slots
    used = np.flatnonzero(weights)
    plaintexts = []
    for giant in range(int(used[-1]) // _BABY + 1 if len(used) else 1):
        row = []
        for baby in range(_BABY):
            diagonal = np.zeros(slots)
            diagonal[giant * _BABY] = weights[giant * _BABY + baby]  # diag rolled right by 8k
            row.append(schedule.encode(diagonal, schedule.prime))
        plaintexts.append(row)
    schedule.rescale_plain()
    constant = np.zeros(slots)
    constant[0] = bias
    return _Layer(plaintexts, schedule.encode(constant, schedule.scale))


def _matrix_vector(context: EvaluationContext, layer: _Layer, vector: seal.Ciphertext) -> seal.Ciphertext:
    """sum_k rot_8k(sum_t plain[k][t] * rot_t(vector)) + bias, the giant sum in Horner form."""
    evaluator, keys = context.evaluator, context.galois_keys
    baby = [vector]
    for _ in range(1, max(len(row) for row in layer.plaintexts)):
        rotated = seal.Ciphertext()
        evaluator.rotate_vector(baby[-1], 1, keys, rotated)
        baby.append(rotated)
    product = seal.Ciphertext()
    inner_sums = []
    for row in layer.plaintexts:
        inner = seal.Ciphertext()
        evaluator.multiply_plain(baby[0], row[0], inner)
        for rotated, plain in zip(baby[1:], row[1:], strict=True):
            evaluator.multiply_plain(rotated, plain, product)
            evaluator.add_inplace(inner, product)
        evaluator.rescale_to_next_inplace(inner)  # before the giant rotation: it then runs a level down
        inner_sums.append(inner)
    total = inner_sums[-1]
    for inner in reversed(inner_sums[:-1]):
        evaluator.rotate_vector_inplace(total, _BABY, keys)
        evaluator.add_inplace(total, inner)
    evaluator.add_plain_inplace(total, layer.bias)
    return total


def _require_valuation_parameters(parameters: CkksParameters, what: str) -> None:
    if parameters != VALUATION_PARAMETERS:
        raise CkksInputError(
            f"{what} use {parameters}; encrypted valuation computes only with {VALUATION_PARAMETERS}"
        )

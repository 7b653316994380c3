"""CKKS parameter sets: the ring degree, the modulus chain and the scale, and the few a node computes with.

Also the packing arithmetic every kernel shares: Galois elements for rotation steps, the padded dimension a
vector is packed at, and a query vector replicated over the slots.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Final

import numpy as np
import tenseal.sealapi as seal

from crypto.errors import CryptoError


class CkksInputError(CryptoError, ValueError):
    """Input refused before any homomorphic work: parameters a node does not accept, bytes that are not a
    ciphertext or keys for these parameters, a ciphertext at the wrong level, a missing rotation key, values
    that do not fit the slots. `reason` says what was wrong and what is allowed."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class CkksParameters:
    """One CKKS parameter set: ring degree N, the bit sizes of the modulus chain, and the scale.

    The defaults are the matching kernel's: N 8192 (4,096 slots), primes of 60, 40 and 60 bits (one level
    for the one rescale the kernel needs, the last prime being the key-switching prime, which must be the
    largest), scale 2^40. Raises CkksInputError for a malformed set; SEAL's 128-bit security check runs
    when the context is built (`seal_context`).
    """

    poly_modulus_degree: int = 8192
    coeff_modulus_bits: tuple[int, ...] = (60, 40, 60)
    scale_bits: int = 40

    def __post_init__(self) -> None:
        degree, bits = self.poly_modulus_degree, self.coeff_modulus_bits
        if not isinstance(degree, int) or degree < 1024 or degree > 32768 or degree & (degree - 1):
            raise CkksInputError(f"poly_modulus_degree must be a power of two in 1024..32768, not {degree!r}")
        if not isinstance(bits, tuple) or not all(isinstance(b, int) and 20 <= b <= 60 for b in bits):
            raise CkksInputError(f"coeff_modulus_bits must be a tuple of ints in 20..60, not {bits!r}")
        if len(bits) < 3:
            raise CkksInputError(
                f"coeff_modulus_bits needs at least 3 primes (a rescale and the key prime), not {bits}"
            )
        # A chain whose key prime is smaller than another was accepted by SEAL and gave wrong results.
        if bits[-1] < max(bits[:-1]):
            raise CkksInputError(f"the last (key-switching) prime must be the largest: {bits}")
        if not isinstance(self.scale_bits, int) or not 20 <= self.scale_bits <= 60:
            raise CkksInputError(f"scale_bits must be an int in 20..60, not {self.scale_bits!r}")

    @property
    def slots(self) -> int:
        return self.poly_modulus_degree // 2

    @property
    def scale(self) -> float:
        return 2.0**self.scale_bits

    def seal_context(self) -> seal.SEALContext:
        """SEAL's context for these parameters (built once per process and shared).

        Raises CkksInputError with SEAL's reason when SEAL refuses them, e.g. below 128-bit security.
        """
        return _seal_context(self)

    def require_allowed(self) -> None:
        """Raise CkksInputError unless a node computes with these parameters (see ALLOWED_PARAMETERS)."""
        if self not in ALLOWED_PARAMETERS:
            raise CkksInputError(
                f"a node does not compute with {self}; it accepts only "
                + ", ".join(map(str, ALLOWED_PARAMETERS))
            )

    def to_json(self) -> str:
        return json.dumps(
            {
                "poly_modulus_degree": self.poly_modulus_degree,
                "coeff_modulus_bits": list(self.coeff_modulus_bits),
                "scale_bits": self.scale_bits,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> CkksParameters:
        """Raise CkksInputError for text that is not a parameter set."""
        try:
            fields = json.loads(text)
            degree, bits, scale_bits = (
                fields["poly_modulus_degree"],
                fields["coeff_modulus_bits"],
                fields["scale_bits"],
            )
        except (ValueError, KeyError, TypeError):
            raise CkksInputError(
                "not a CKKS parameter set (JSON with poly_modulus_degree, coeff_modulus_bits, scale_bits)"
            ) from None
        if not isinstance(bits, list):
            raise CkksInputError(f"coeff_modulus_bits must be a list, not {bits!r}")
        return cls(poly_modulus_degree=degree, coeff_modulus_bits=tuple(bits), scale_bits=scale_bits)


# The encrypted valuation's set (models/valuation/encrypted.py): 7 rescales by 40-bit primes at scale 2^40
# (three linear layers, two polynomial activations of depth 2), a 50-bit first prime (the result's last
# level: values up to +-2^9) and a 60-bit key-switching prime, the largest. With a 60-bit first prime the
# key prime is no larger than it, and rotations added 50x more error (1e-6 instead of 2e-8 per layer,
# measured). 390 bits need N = 16384 for 128-bit security (N = 8192 allows 218, too few for 7 levels).
VALUATION_PARAMETERS: Final = CkksParameters(
    poly_modulus_degree=16384, coeff_modulus_bits=(50, 40, 40, 40, 40, 40, 40, 40, 60), scale_bits=40
)

# Every set added here must pass SEAL's 128-bit check and be sized so that one query's work and one
# consumer's keys stay bounded on a node: the matching kernel's (the defaults) and the valuation's.
ALLOWED_PARAMETERS: Final[tuple[CkksParameters, ...]] = (CkksParameters(), VALUATION_PARAMETERS)


@functools.lru_cache(maxsize=8)
def _seal_context(parameters: CkksParameters) -> seal.SEALContext:
    parms = seal.EncryptionParameters(seal.SCHEME_TYPE.CKKS)
    parms.set_poly_modulus_degree(parameters.poly_modulus_degree)
    try:
        parms.set_coeff_modulus(
            seal.CoeffModulus.Create(parameters.poly_modulus_degree, list(parameters.coeff_modulus_bits))
        )
    except (ValueError, RuntimeError):
        raise CkksInputError(
            f"SEAL finds no primes of {parameters.coeff_modulus_bits} bits for this N"
        ) from None
    context = seal.SEALContext(parms, True, seal.SEC_LEVEL_TYPE.TC128)
    if not context.parameters_set():
        raise CkksInputError(f"SEAL refuses {parameters}: {context.parameters_error_message()}")
    return context


def galois_element(step: int, poly_modulus_degree: int) -> int:
    """SEAL's Galois element for rotating the slots left by `step` (right when negative): 3^step mod 2N.

    `KeyGenerator.create_galois_keys(list)` takes elements, not steps; SEAL maps a negative step to
    slots - |step|, which `step % slots` does here.
    """
    slots = poly_modulus_degree // 2
    if isinstance(step, bool) or not isinstance(step, int) or step % slots == 0:
        raise CkksInputError(f"a rotation step must be a non-zero int modulo {slots} slots, not {step!r}")
    return pow(3, step % slots, 2 * poly_modulus_degree)


def padded_dimension(dimension: int) -> int:
    """The power of two a vector of `dimension` values is zero-padded to before packing (384 -> 512).

    Rotating a replicated vector by j must bring value (i + j) mod d to slot i, which needs d to divide
    the slot count; zero padding keeps every inner product unchanged.
    """
    if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
        raise CkksInputError(f"a dimension must be a positive int, not {dimension!r}")
    return 1 << (dimension - 1).bit_length()


def replicate(vector: np.ndarray, slots: int) -> np.ndarray:
    """The query's packing: zero-padded to `padded_dimension(d)` values, repeated over every slot.

    Raises CkksInputError for a vector that is not 1-D, holds NaN or infinity, or does not fit the slots.
    """
    values = np.asarray(vector, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise CkksInputError(f"a query must be a non-empty 1-D vector, not of shape {values.shape}")
    if not np.isfinite(values).all():
        raise CkksInputError("the query holds NaN or infinite values")
    width = padded_dimension(values.size)
    if width > slots:
        raise CkksInputError(f"a {values.size}-value query needs {width} slots; there are {slots}")
    padded = np.zeros(width)
    padded[: values.size] = values
    return np.tile(padded, slots // width)

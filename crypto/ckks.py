"""CKKS parameters and keys for encrypted queries, on SEAL's own API (`tenseal.sealapi`).

The consumer makes `ConsumerKeys` (secret key and the few Galois keys a kernel needs), encrypts its query
and alone decrypts the answer. A node gets only `evaluation_keys()` and builds an `EvaluationContext` from
them: it can rotate, multiply by its own plaintexts and add, never decrypt. A node computes only with the
parameter sets in `ALLOWED_PARAMETERS`, so a consumer cannot make it work with insecure or huge ones.

`tenseal.sealapi` 0.3.18 saves and loads SEAL objects only through file paths (no bytes or stream API), so
bytes go through a private temporary directory (mode 0700, memory-backed where /dev/shm exists, removed at
once). It does reach SEAL's seeded forms, `Encryptor.encrypt_symmetric(plain)` and
`KeyGenerator.create_galois_keys(elements)` without an output argument, which send a 64-byte seed instead
of half of each ciphertext: queries and evaluation keys travel at about half their full size.

A kernel that multiplies two ciphertexts (a polynomial activation) also needs the consumer's
relinearization key: `ConsumerKeys.generate(..., relinearization=True)` adds it to the evaluation keys,
which then travel framed (`_EVALUATION_KEYS_FRAME`); without it they stay SEAL's Galois-keys bytes alone.
"""

from __future__ import annotations

import functools
import json
import math
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NoReturn, Protocol

import numpy as np
import tenseal.sealapi as seal

from crypto._keyfiles import PRIVATE_MODE, PUBLIC_MODE, read_file, refuse_existing, write_new_file
from crypto.errors import CryptoError

__all__ = [
    "ALLOWED_PARAMETERS",
    "MAX_ROTATION_KEYS",
    "VALUATION_PARAMETERS",
    "CkksInputError",
    "CkksParameters",
    "ConsumerKeys",
    "EvaluationContext",
    "galois_element",
    "padded_dimension",
    "replicate",
]

PARAMETERS_FILE = "ckks-parameters.json"
SECRET_KEY_FILE = "ckks-secret.key"  # noqa: S105 (a file name, not a secret)
EVALUATION_KEYS_FILE = "ckks-evaluation.keys"

# A kernel needs two rotation keys (steps 1 and b); a few more leave room for other kernels while bounding
# what a node loads per consumer (one key is about 0.36 MB seeded, 0.75 MB expanded, at the defaults).
MAX_ROTATION_KEYS: Final = 8
# Evaluation keys with a relinearization key: this prefix, the Galois keys' length (8 bytes, big-endian),
# SEAL's Galois-keys bytes, then SEAL's relinearization-key bytes. SEAL's own bytes start with its magic
# 0xA15E, so the prefix cannot be mistaken for them.
_EVALUATION_KEYS_FRAME: Final = b"ipsCKKS\x01"
_SCRATCH_DIR: Final = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # noqa: S108 (private subdir)


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


class _Saveable(Protocol):
    def save(self, path: str) -> None: ...


def _saved_bytes(item: _Saveable) -> bytes:
    """A SEAL object (or its seeded Serializable form) as SEAL's compressed bytes."""
    with tempfile.TemporaryDirectory(prefix="ckks-", dir=_SCRATCH_DIR) as directory:
        path = os.path.join(directory, "item")
        item.save(path)
        with open(path, "rb") as handle:
            return handle.read()


def _load_bytes(
    item: seal.Ciphertext | seal.GaloisKeys | seal.RelinKeys | seal.SecretKey,
    data: bytes,
    context: seal.SEALContext,
    what: str,
) -> None:
    """Load `data` into `item`; SEAL checks on load that it is valid for `context`."""
    with tempfile.TemporaryDirectory(prefix="ckks-", dir=_SCRATCH_DIR) as directory:
        path = os.path.join(directory, "item")
        with open(path, "xb") as handle:
            handle.write(data)
        try:
            item.load(context, path)
        except (RuntimeError, ValueError):
            raise CkksInputError(f"the bytes are not a valid {what} for these parameters") from None
    if not seal.is_valid_for(item, context):
        raise CkksInputError(f"the bytes are not a valid {what} for these parameters")


def _max_ciphertext_bytes(parameters: CkksParameters) -> int:
    """Largest serialized 2-polynomial ciphertext at the first data level: expanded, with zstd's worst case
    and SEAL's header and metadata."""
    raw = 2 * parameters.poly_modulus_degree * (len(parameters.coeff_modulus_bits) - 1) * 8
    return seal.Serialization.ComprSizeEstimate(raw, seal.COMPR_MODE_TYPE.ZSTD) + 1024


def _max_evaluation_key_bytes(parameters: CkksParameters) -> int:
    """MAX_ROTATION_KEYS Galois keys and a relinearization key (the same size), expanded, at zstd's worst."""
    primes = len(parameters.coeff_modulus_bits)
    per_key = (primes - 1) * 2 * parameters.poly_modulus_degree * primes * 8
    keys = (MAX_ROTATION_KEYS + 1) * per_key
    return seal.Serialization.ComprSizeEstimate(keys, seal.COMPR_MODE_TYPE.ZSTD) + 8192


def _require_bytes(data: object, limit: int, what: str) -> bytes:
    if not isinstance(data, bytes):
        raise CkksInputError(f"{what} must be bytes, not {type(data).__name__}")
    if len(data) > limit:
        raise CkksInputError(
            f"{what} is {len(data):,} bytes; at most {limit:,} are accepted for these parameters"
        )
    return data


def _frame_evaluation_keys(galois_keys: bytes, relin_keys: bytes | None) -> bytes:
    if relin_keys is None:
        return galois_keys
    return _EVALUATION_KEYS_FRAME + len(galois_keys).to_bytes(8, "big") + galois_keys + relin_keys


def _load_evaluation_keys(
    parameters: CkksParameters, data: bytes
) -> tuple[seal.GaloisKeys, seal.RelinKeys | None]:
    """The Galois keys, and the relinearization key when the bytes are framed with one."""
    data = _require_bytes(data, _max_evaluation_key_bytes(parameters), "evaluation keys")
    context = parameters.seal_context()
    relin_keys = None
    if data.startswith(_EVALUATION_KEYS_FRAME):
        header = len(_EVALUATION_KEYS_FRAME) + 8
        length = int.from_bytes(data[len(_EVALUATION_KEYS_FRAME) : header], "big")
        if len(data) < header or not 0 < length < len(data) - header:
            raise CkksInputError("the evaluation keys' frame holds no Galois keys and relinearization key")
        data, relin_data = data[header : header + length], data[header + length :]
        relin_keys = seal.RelinKeys()
        _load_bytes(relin_keys, relin_data, context, "relinearization key")
        if relin_keys.size() != 1:  # SEAL's CKKS relinearizes size-3 ciphertexts with exactly one key
            raise CkksInputError(f"{relin_keys.size()} relinearization keys sent; a node loads exactly 1")
    keys = seal.GaloisKeys()
    _load_bytes(keys, data, context, "set of Galois keys")
    if keys.size() > MAX_ROTATION_KEYS:
        raise CkksInputError(f"{keys.size()} Galois keys sent; a node loads at most {MAX_ROTATION_KEYS}")
    return keys, relin_keys


class ConsumerKeys:
    """The consumer's key handle: the CKKS secret key, the Galois keys of the rotation steps it chose and,
    if asked for, a relinearization key (for kernels that multiply ciphertexts).

    It encrypts and decrypts; what a node may have leaves it only as `evaluation_keys()`. It refuses
    pickling, and its repr shows no secret.

    Encryption is symmetric, with the secret key: only the consumer ever encrypts for its own key, SEAL then
    sends the ciphertext's random half as a seed (half the query bytes), there is no public key to make,
    store or send, and the security rests on the same RLWE assumption as public-key encryption.
    """

    __slots__ = (
        "_context",
        "_decryptor",
        "_encoder",
        "_encryptor",
        "_evaluation_keys",
        "_parameters",
        "_relinearization",
        "_secret_key",
        "_steps",
    )

    def __init__(
        self,
        parameters: CkksParameters,
        secret_key: seal.SecretKey,
        evaluation_keys: bytes,
        steps: tuple[int, ...],
        relinearization: bool = False,
    ) -> None:
        """Use `generate` or `load`."""
        self._parameters = parameters
        self._relinearization = relinearization
        self._context = parameters.seal_context()
        self._secret_key = secret_key
        self._evaluation_keys = evaluation_keys
        self._steps = steps
        self._encoder = seal.CKKSEncoder(self._context)
        self._encryptor = seal.Encryptor(self._context, secret_key)
        self._decryptor = seal.Decryptor(self._context, secret_key)

    @classmethod
    def generate(
        cls, parameters: CkksParameters, rotation_steps: Iterable[int], *, relinearization: bool = False
    ) -> ConsumerKeys:
        """Fresh keys, with Galois keys for exactly `rotation_steps` (left rotations by that many slots) and,
        with `relinearization`, the key that relinearizes a product of two ciphertexts.

        Raises CkksInputError for parameters SEAL refuses, a step that is zero or not an int, or more than
        MAX_ROTATION_KEYS steps.
        """
        context = parameters.seal_context()
        steps = tuple(sorted(set(rotation_steps)))
        if len(steps) > MAX_ROTATION_KEYS:
            raise CkksInputError(
                f"{len(steps)} rotation steps asked; a node loads at most {MAX_ROTATION_KEYS}"
            )
        elements = [galois_element(step, parameters.poly_modulus_degree) for step in steps]
        generator = seal.KeyGenerator(context)
        # Without an output argument SEAL returns the seeded, half-size form; it only serializes.
        evaluation_keys = _frame_evaluation_keys(
            _saved_bytes(generator.create_galois_keys(elements)),
            _saved_bytes(generator.create_relin_keys()) if relinearization else None,  # seeded as well
        )
        return cls(parameters, generator.secret_key(), evaluation_keys, steps, relinearization)

    @property
    def parameters(self) -> CkksParameters:
        return self._parameters

    @property
    def rotation_steps(self) -> tuple[int, ...]:
        return self._steps

    @property
    def relinearization(self) -> bool:
        """Whether the evaluation keys hold a relinearization key."""
        return self._relinearization

    def evaluation_keys(self) -> bytes:
        """What a node gets: the Galois keys of `rotation_steps` and the relinearization key if there is one
        (seeded forms). No secret key, and no public key either: a node never encrypts."""
        return self._evaluation_keys

    def encrypt(self, values: np.ndarray) -> bytes:
        """Encrypt up to `slots` real values (the rest are 0) at the first data level and the scale.

        Raises CkksInputError for values that are not 1-D, too many, NaN or infinite.
        """
        array = np.asarray(values, dtype=np.float64)
        if array.ndim != 1 or not 0 < array.size <= self._parameters.slots:
            raise CkksInputError(
                f"encrypt takes 1 to {self._parameters.slots} values in a 1-D array, not shape {array.shape}"
            )
        if not np.isfinite(array).all():
            raise CkksInputError("the values hold NaN or infinite numbers")
        plain = seal.Plaintext()
        self._encoder.encode(array.tolist(), self._parameters.scale, plain)
        return _saved_bytes(self._encryptor.encrypt_symmetric(plain))

    def decrypt(self, ciphertext: bytes, count: int) -> np.ndarray:
        """The real parts of the first `count` slots of a ciphertext made for these keys.

        Raises CkksInputError for bytes that are not a ciphertext for these parameters (an answer comes from
        another party) or a count outside 1..slots. A ciphertext under another secret key decrypts to noise:
        CKKS cannot tell.
        """
        return self.decrypt_complex(ciphertext, count).real

    def decrypt_complex(self, ciphertext: bytes, count: int) -> np.ndarray:
        """The first `count` slots as complex numbers (a kernel may pack two values per slot). Raises as
        `decrypt` does."""
        if isinstance(count, bool) or not isinstance(count, int) or not 0 < count <= self._parameters.slots:
            raise CkksInputError(f"count must be an int in 1..{self._parameters.slots}, not {count!r}")
        data = _require_bytes(ciphertext, _max_ciphertext_bytes(self._parameters), "a ciphertext")
        loaded = seal.Ciphertext()
        _load_bytes(loaded, data, self._context, "ciphertext")
        if loaded.size() != 2:
            raise CkksInputError(f"a ciphertext to decrypt has 2 polynomials, this one {loaded.size()}")
        plain = seal.Plaintext()
        self._decryptor.decrypt(loaded, plain)
        return np.asarray(self._encoder.decode_complex(plain), dtype=np.complex128)[:count]

    def save(self, directory: Path) -> None:
        """Write the parameters, the secret key (mode 0600) and the evaluation keys into `directory`.

        Raises FileExistsError (before writing anything) if one of the files already exists.
        """
        directory = Path(directory)
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        metadata = json.loads(self._parameters.to_json()) | {"rotation_steps": list(self._steps)}
        files = [
            (PARAMETERS_FILE, json.dumps(metadata, sort_keys=True).encode(), PUBLIC_MODE),
            (SECRET_KEY_FILE, _saved_bytes(self._secret_key), PRIVATE_MODE),
            (EVALUATION_KEYS_FILE, self._evaluation_keys, PUBLIC_MODE),
        ]
        refuse_existing([directory / name for name, _, _ in files])
        for name, data, mode in files:
            write_new_file(directory / name, data, mode)

    @classmethod
    def load(cls, directory: Path) -> ConsumerKeys:
        """Read keys written by `save`.

        Raises FileNotFoundError naming a missing file, CkksInputError for a file that does not hold what it
        should (SEAL checks each key against the parameters) or evaluation keys that do not match the steps.
        """
        directory = Path(directory)
        metadata_text = read_file(directory / PARAMETERS_FILE, "CKKS parameters").decode("utf-8", "replace")
        parameters = CkksParameters.from_json(metadata_text)
        try:
            steps = tuple(int(step) for step in json.loads(metadata_text)["rotation_steps"])
        except (ValueError, KeyError, TypeError):
            raise CkksInputError(f"{directory / PARAMETERS_FILE} names no rotation_steps") from None
        context = parameters.seal_context()
        secret_key = seal.SecretKey()
        _load_bytes(
            secret_key, read_file(directory / SECRET_KEY_FILE, "CKKS secret key"), context, "secret key"
        )
        evaluation_keys = read_file(directory / EVALUATION_KEYS_FILE, "CKKS evaluation keys")
        keys, relin_keys = _load_evaluation_keys(parameters, evaluation_keys)
        for step in steps:
            if not keys.has_key(galois_element(step, parameters.poly_modulus_degree)):
                raise CkksInputError(f"{directory / EVALUATION_KEYS_FILE} lacks the key for step {step}")
        return cls(parameters, secret_key, evaluation_keys, steps, relin_keys is not None)

    def __repr__(self) -> str:
        return (
            f"ConsumerKeys(parameters={self._parameters}, rotation_steps={self._steps}, "
            f"relinearization={self._relinearization})"
        )

    def __reduce__(self) -> NoReturn:
        raise TypeError("ConsumerKeys holds a CKKS secret key and cannot be pickled or copied")


class EvaluationContext:
    """A node's view of one consumer: the parameters, SEAL's evaluator and encoder, and the consumer's
    Galois keys (and relinearization key, if sent). It holds no secret key and cannot decrypt.

    `from_bytes` for a consumer's evaluation keys; `keyless` for encoding a node's plaintexts before any
    consumer asks (plaintexts depend only on the parameters).
    """

    __slots__ = ("_context", "_encoder", "_evaluator", "_galois_keys", "_parameters", "_relin_keys")

    def __init__(
        self,
        parameters: CkksParameters,
        galois_keys: seal.GaloisKeys | None,
        relin_keys: seal.RelinKeys | None = None,
    ) -> None:
        """Use `from_bytes` or `keyless`."""
        self._parameters = parameters
        self._context = parameters.seal_context()
        self._galois_keys = galois_keys
        self._relin_keys = relin_keys
        self._encoder = seal.CKKSEncoder(self._context)
        self._evaluator = seal.Evaluator(self._context)

    @classmethod
    def from_bytes(cls, parameters: CkksParameters, evaluation_keys: bytes) -> EvaluationContext:
        """The context for a consumer's evaluation keys.

        Raises CkksInputError for parameters not in ALLOWED_PARAMETERS, more bytes than MAX_ROTATION_KEYS
        keys (and a relinearization key) take, bytes SEAL does not load as Galois keys (and a
        relinearization key) valid for these parameters, or too many keys.
        """
        parameters.require_allowed()
        return cls(parameters, *_load_evaluation_keys(parameters, evaluation_keys))

    @classmethod
    def keyless(cls, parameters: CkksParameters) -> EvaluationContext:
        """A context with no consumer's keys: it encodes and multiplies, but every rotation is refused.

        Raises CkksInputError for parameters not in ALLOWED_PARAMETERS.
        """
        parameters.require_allowed()
        return cls(parameters, None)

    @property
    def parameters(self) -> CkksParameters:
        return self._parameters

    @property
    def encoder(self) -> seal.CKKSEncoder:
        return self._encoder

    @property
    def evaluator(self) -> seal.Evaluator:
        return self._evaluator

    @property
    def galois_keys(self) -> seal.GaloisKeys:
        """Raises CkksInputError for a keyless context."""
        if self._galois_keys is None:
            raise CkksInputError("this context holds no consumer's evaluation keys")
        return self._galois_keys

    @property
    def relin_keys(self) -> seal.RelinKeys:
        """Raises CkksInputError when the consumer sent no relinearization key (or the context is keyless)."""
        if self._relin_keys is None:
            raise CkksInputError(
                "the consumer sent no relinearization key, which a kernel that multiplies ciphertexts needs"
            )
        return self._relin_keys

    @property
    def first_parms_id(self) -> list[int]:
        """SEAL's id of the first data level, where queries arrive and plaintexts are encoded."""
        return self._context.first_parms_id()

    @property
    def last_parms_id(self) -> list[int]:
        return self._context.last_parms_id()

    def require_rotations(self, steps: Iterable[int]) -> None:
        """Raise CkksInputError naming the first step whose Galois key the consumer did not send."""
        for step in steps:
            element = galois_element(step, self._parameters.poly_modulus_degree)
            if self._galois_keys is None or not self._galois_keys.has_key(element):
                raise CkksInputError(
                    f"the consumer sent no Galois key for a rotation by {step} slots, which this kernel needs"
                )

    def load_ciphertext(self, data: bytes) -> seal.Ciphertext:
        """A query ciphertext from its bytes, checked as `check_ciphertext` does.

        Raises CkksInputError for more bytes than such a ciphertext takes, bytes SEAL does not load as a
        ciphertext valid for these parameters, or a ciphertext in another form than a fresh query's.
        """
        data = _require_bytes(data, _max_ciphertext_bytes(self._parameters), "a query ciphertext")
        ciphertext = seal.Ciphertext()
        _load_bytes(ciphertext, data, self._context, "ciphertext")
        self.check_ciphertext(ciphertext)
        return ciphertext

    def check_ciphertext(self, ciphertext: seal.Ciphertext) -> None:
        """Raise CkksInputError unless `ciphertext` is a fresh query's form: valid for these parameters, at
        the first data level (where the kernel's plaintexts live), 2 polynomials, not transparent, at the
        parameters' scale."""
        if not isinstance(ciphertext, seal.Ciphertext) or not seal.is_valid_for(ciphertext, self._context):
            raise CkksInputError("not a ciphertext valid for these parameters")
        if ciphertext.parms_id() != self.first_parms_id:
            primes = ciphertext.coeff_modulus_size()
            expected = len(self._parameters.coeff_modulus_bits) - 1
            raise CkksInputError(
                f"the query is at the level of {primes} prime(s); it must be at the first data level "
                f"({expected} primes), as a fresh encryption is"
            )
        if ciphertext.size() != 2:
            raise CkksInputError(f"a query has 2 polynomials, this one {ciphertext.size()}")
        if ciphertext.is_transparent():
            raise CkksInputError("the query is transparent (not encrypted)")
        if ciphertext.scale != self._parameters.scale:
            raise CkksInputError(
                f"the query's scale is 2^{math.log2(ciphertext.scale):.2f}; "
                f"it must be 2^{self._parameters.scale_bits}"
            )

    def ciphertext_bytes(self, ciphertext: seal.Ciphertext) -> bytes:
        """A result's bytes, after switching it to the last level (the smallest form that still decrypts)."""
        if ciphertext.parms_id() != self.last_parms_id:
            self._evaluator.mod_switch_to_inplace(ciphertext, self.last_parms_id)
        return _saved_bytes(ciphertext)

    def __repr__(self) -> str:
        keys = "none" if self._galois_keys is None else self._galois_keys.size()
        relin = self._relin_keys is not None
        return (
            f"EvaluationContext(parameters={self._parameters}, galois_keys={keys}, relinearization={relin})"
        )

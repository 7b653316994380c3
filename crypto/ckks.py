"""CKKS parameters and keys for encrypted queries, on SEAL's own API (`tenseal.sealapi`).

The consumer makes `ConsumerKeys` (secret key and the few Galois keys a kernel needs), encrypts its query
and alone decrypts the answer. A node gets only `evaluation_keys()` and builds an `EvaluationContext` from
them: it can rotate, multiply by its own plaintexts and add, never decrypt. A node computes only with the
parameter sets in `ALLOWED_PARAMETERS`, so a consumer cannot make it work with insecure or huge ones.

Parameter sets live in `crypto/ckks_parameters.py` and bytes handling in `crypto/_seal_io.py` (re-exported
here). SEAL's seeded forms are reached: `Encryptor.encrypt_symmetric(plain)` and
`KeyGenerator.create_galois_keys(elements)` without an output argument, which send a 64-byte seed instead
of half of each ciphertext: queries and evaluation keys travel at about half their full size.

A kernel that multiplies two ciphertexts (a polynomial activation) also needs the consumer's
relinearization key: `ConsumerKeys.generate(..., relinearization=True)` adds it to the evaluation keys,
which then travel framed (`_EVALUATION_KEYS_FRAME`); without it they stay SEAL's Galois-keys bytes alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

import numpy as np
import tenseal.sealapi as seal

from crypto._keyfiles import PRIVATE_MODE, PUBLIC_MODE, read_file, refuse_existing, write_new_file
from crypto._seal_io import (
    MAX_ROTATION_KEYS,
    _frame_evaluation_keys,
    _load_bytes,
    _load_evaluation_keys,
    _max_ciphertext_bytes,
    _require_bytes,
    _saved_bytes,
)
from crypto.ckks_parameters import (
    ALLOWED_PARAMETERS,
    VALUATION_PARAMETERS,
    CkksInputError,
    CkksParameters,
    galois_element,
    padded_dimension,
    replicate,
)

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

"""SEAL objects to and from bytes, with the bounds a node enforces before it loads anything.

`tenseal.sealapi` 0.3.18 saves and loads SEAL objects only through file paths (no bytes or stream API), so
bytes go through a private temporary directory (mode 0700, memory-backed where /dev/shm exists, removed at
once).
"""

from __future__ import annotations

import os
import tempfile
from typing import Final, Protocol

import tenseal.sealapi as seal

from crypto.ckks_parameters import CkksInputError, CkksParameters

# A kernel needs two rotation keys (steps 1 and b); a few more leave room for other kernels while bounding
# what a node loads per consumer (one key is about 0.36 MB seeded, 0.75 MB expanded, at the defaults).
MAX_ROTATION_KEYS: Final = 8
# Evaluation keys with a relinearization key: this prefix, the Galois keys' length (8 bytes, big-endian),
# SEAL's Galois-keys bytes, then SEAL's relinearization-key bytes. SEAL's own bytes start with its magic
# 0xA15E, so the prefix cannot be mistaken for them.
_EVALUATION_KEYS_FRAME: Final = b"ipsCKKS\x01"
_SCRATCH_DIR: Final = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # noqa: S108 (private subdir)


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

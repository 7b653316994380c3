"""CKKS parameters and keys: what a node accepts, what the consumer's keys hold, and what leaves them.

Real SEAL objects throughout (tenseal.sealapi); one consumer's keys per module, made once.
"""

from __future__ import annotations

import copy
import os
import pickle
import stat
from pathlib import Path

import numpy as np
import pytest

from crypto.ckks import (
    ALLOWED_PARAMETERS,
    EVALUATION_KEYS_FILE,
    MAX_ROTATION_KEYS,
    PARAMETERS_FILE,
    SECRET_KEY_FILE,
    VALUATION_PARAMETERS,
    CkksInputError,
    CkksParameters,
    ConsumerKeys,
    EvaluationContext,
    galois_element,
    padded_dimension,
    replicate,
)

PARAMETERS = CkksParameters()
SLOTS = PARAMETERS.slots
STEPS = (1, 16, -3)


@pytest.fixture(scope="module")
def keys() -> ConsumerKeys:
    return ConsumerKeys.generate(PARAMETERS, STEPS)


@pytest.fixture(scope="module")
def node(keys: ConsumerKeys) -> EvaluationContext:
    return EvaluationContext.from_bytes(PARAMETERS, keys.evaluation_keys())


def _values(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, SLOTS)


def _refused(call: object, *fragments: str) -> CkksInputError:
    """Run `call`, expect CkksInputError, and check its reason names every fragment."""
    with pytest.raises(CkksInputError) as caught:
        call()  # type: ignore[operator]
    for fragment in fragments:
        assert fragment in caught.value.reason, caught.value.reason
    return caught.value


def test_a_node_accepts_only_the_matching_and_the_valuation_parameters() -> None:
    assert (CkksParameters(8192, (60, 40, 60), 40), VALUATION_PARAMETERS) == ALLOWED_PARAMETERS
    assert PARAMETERS.slots == 4096
    assert PARAMETERS.scale == 2.0**40
    assert CkksParameters(16384, (50, 40, 40, 40, 40, 40, 40, 40, 60), 40) == VALUATION_PARAMETERS
    assert VALUATION_PARAMETERS.seal_context().parameters_set()  # SEAL's 128-bit check passed


def test_encrypting_and_decrypting_round_trips_within_the_ckks_error(keys: ConsumerKeys) -> None:
    values = _values()
    assert np.abs(keys.decrypt(keys.encrypt(values), SLOTS) - values).max() < 1e-6
    assert np.abs(keys.decrypt(keys.encrypt(values[:10]), 12) - [*values[:10], 0, 0]).max() < 1e-6


def test_complex_decryption_gives_the_real_values_and_zero_imaginary_parts(keys: ConsumerKeys) -> None:
    values = _values(4)
    slots = keys.decrypt_complex(keys.encrypt(values), SLOTS)
    assert slots.dtype == np.complex128
    assert np.abs(slots.real - values).max() < 1e-6 and np.abs(slots.imag).max() < 1e-6


def test_a_query_travels_in_seeded_form_at_about_half_a_full_ciphertext(keys: ConsumerKeys) -> None:
    full_size = 2 * PARAMETERS.poly_modulus_degree * 2 * 8  # two polynomials at two primes, 8-byte words
    assert len(keys.encrypt(_values())) < 0.55 * full_size


@pytest.mark.parametrize("step", [1, 16, -3])
def test_a_rotation_key_for_a_step_rotates_the_slots_left_by_that_step(
    keys: ConsumerKeys, node: EvaluationContext, step: int
) -> None:
    import tenseal.sealapi as seal

    values = _values(1)
    rotated = seal.Ciphertext()
    node.evaluator.rotate_vector(node.load_ciphertext(keys.encrypt(values)), step, node.galois_keys, rotated)
    assert np.abs(keys.decrypt(node.ciphertext_bytes(rotated), SLOTS) - np.roll(values, -step)).max() < 1e-5


def test_the_galois_element_of_a_step_is_three_to_that_power_modulo_2n() -> None:
    assert galois_element(1, 8192) == 3
    assert galois_element(16, 8192) == pow(3, 16, 16384)
    assert galois_element(-1, 8192) == pow(3, 4095, 16384)
    _refused(lambda: galois_element(0, 8192), "non-zero")
    _refused(lambda: galois_element(4096, 8192), "non-zero")


def test_evaluation_keys_hold_only_the_requested_rotations(
    keys: ConsumerKeys, node: EvaluationContext
) -> None:
    assert keys.rotation_steps == (-3, 1, 16)
    assert node.galois_keys.size() == 3
    node.require_rotations([1, 16, -3])
    _refused(lambda: node.require_rotations([1, 2]), "no Galois key for a rotation by 2 slots")


def test_a_context_without_keys_refuses_every_rotation() -> None:
    keyless = EvaluationContext.keyless(PARAMETERS)
    _refused(lambda: keyless.require_rotations([1]), "rotation by 1 slots")
    _refused(lambda: keyless.galois_keys, "no consumer's evaluation keys")


def test_evaluation_keys_do_not_contain_the_secret_key(keys: ConsumerKeys, tmp_path: Path) -> None:
    keys.save(tmp_path / "consumer")
    secret = (tmp_path / "consumer" / SECRET_KEY_FILE).read_bytes()
    shared = keys.evaluation_keys()
    body = secret[16:]  # after SEAL's 16-byte header, which every SEAL file shares
    assert secret not in shared and body not in shared
    for offset in range(0, len(body) - 32, max(1, (len(body) - 32) // 64)):
        assert body[offset : offset + 32] not in shared
    node = EvaluationContext.from_bytes(PARAMETERS, shared)
    assert not any(hasattr(node, name) for name in ("decrypt", "secret_key", "_secret_key", "_decryptor"))


def test_another_consumers_keys_decrypt_only_noise(keys: ConsumerKeys) -> None:
    values = _values(2)
    other = ConsumerKeys.generate(PARAMETERS, [1])
    assert np.abs(other.decrypt(keys.encrypt(values), SLOTS) - values).mean() > 1.0


def test_a_garbage_or_empty_query_is_refused(node: EvaluationContext) -> None:
    for data in (b"", b"not a ciphertext", os.urandom(100_000)):
        _refused(lambda data=data: node.load_ciphertext(data), "not a valid ciphertext for these parameters")
    _refused(lambda: node.load_ciphertext("text"), "must be bytes")  # type: ignore[arg-type]


def test_a_truncated_or_altered_query_is_refused(keys: ConsumerKeys, node: EvaluationContext) -> None:
    data = keys.encrypt(_values())
    _refused(lambda: node.load_ciphertext(data[: len(data) // 2]), "not a valid ciphertext")
    _refused(lambda: node.load_ciphertext(data[:100] + bytes(len(data) - 100)), "not a valid ciphertext")


def test_an_oversized_query_is_refused_before_it_is_parsed(
    keys: ConsumerKeys, node: EvaluationContext
) -> None:
    data = keys.encrypt(_values())
    _refused(lambda: node.load_ciphertext(data + bytes(300_000)), "bytes; at most", "are accepted")


def test_a_query_at_the_wrong_level_is_refused(keys: ConsumerKeys, node: EvaluationContext) -> None:
    lowered = node.ciphertext_bytes(
        node.load_ciphertext(keys.encrypt(_values()))
    )  # switched to the last level
    _refused(lambda: node.load_ciphertext(lowered), "level of 1 prime(s)", "first data level (2 primes)")


def test_a_query_at_another_scale_is_refused(keys: ConsumerKeys, node: EvaluationContext) -> None:
    from crypto.ckks import _saved_bytes

    query = node.load_ciphertext(keys.encrypt(_values()))
    query.scale = 2.0**30
    _refused(lambda: node.load_ciphertext(_saved_bytes(query)), "scale is 2^30.00", "must be 2^40")


def test_a_query_under_other_parameters_is_refused(node: EvaluationContext) -> None:
    other = ConsumerKeys.generate(CkksParameters(8192, (60, 40, 40, 60), 40), [1])
    _refused(lambda: node.load_ciphertext(other.encrypt(_values())), "not a valid ciphertext")


def test_a_node_refuses_parameters_outside_its_allow_list(keys: ConsumerKeys) -> None:
    bigger = CkksParameters(16384, (60, 40, 40, 60), 40)
    _refused(lambda: EvaluationContext.from_bytes(bigger, keys.evaluation_keys()), "does not compute with")
    _refused(lambda: EvaluationContext.keyless(CkksParameters(8192, (60, 40, 40, 60), 40)), "accepts only")


def test_parameters_seal_finds_insecure_are_refused() -> None:
    insecure = CkksParameters(1024, (60, 40, 60), 40)
    _refused(insecure.seal_context, "SEAL refuses", "security")
    _refused(lambda: ConsumerKeys.generate(insecure, [1]), "SEAL refuses")


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"poly_modulus_degree": 1000}, "power of two"),
        ({"coeff_modulus_bits": (60, 40)}, "at least 3 primes"),
        ({"coeff_modulus_bits": (60, 40, 40)}, "must be the largest"),
        ({"coeff_modulus_bits": [60, 40, 60]}, "tuple of ints"),
        ({"coeff_modulus_bits": (60, 70, 60)}, "in 20..60"),
        ({"scale_bits": 10}, "scale_bits"),
    ],
)
def test_malformed_parameters_are_refused(fields: dict[str, object], fragment: str) -> None:
    _refused(lambda: CkksParameters(**fields), fragment)  # type: ignore[arg-type]


def test_garbage_or_oversized_evaluation_keys_are_refused(keys: ConsumerKeys) -> None:
    _refused(lambda: EvaluationContext.from_bytes(PARAMETERS, b"garbage"), "not a valid set of Galois keys")
    _refused(lambda: EvaluationContext.from_bytes(PARAMETERS, bytes(20_000_000)), "at most")
    half = keys.evaluation_keys()[: len(keys.evaluation_keys()) // 2]
    _refused(lambda: EvaluationContext.from_bytes(PARAMETERS, half), "not a valid set of Galois keys")


def test_more_rotation_steps_than_a_node_loads_are_refused() -> None:
    _refused(lambda: ConsumerKeys.generate(PARAMETERS, range(1, MAX_ROTATION_KEYS + 2)), "at most 8")
    _refused(lambda: ConsumerKeys.generate(PARAMETERS, [0]), "non-zero")


def test_keys_saved_and_loaded_decrypt_alike_and_the_secret_key_is_private(
    keys: ConsumerKeys, tmp_path: Path
) -> None:
    directory = tmp_path / "consumer"
    keys.save(directory)
    assert stat.S_IMODE((directory / SECRET_KEY_FILE).stat().st_mode) == 0o600
    loaded = ConsumerKeys.load(directory)
    assert loaded.parameters == keys.parameters and loaded.rotation_steps == keys.rotation_steps
    assert loaded.evaluation_keys() == keys.evaluation_keys()
    values = _values(3)
    assert np.abs(loaded.decrypt(keys.encrypt(values), SLOTS) - values).max() < 1e-6
    assert np.abs(keys.decrypt(loaded.encrypt(values), SLOTS) - values).max() < 1e-6


def test_saving_keys_never_overwrites_and_writes_nothing_when_refused(
    keys: ConsumerKeys, tmp_path: Path
) -> None:
    directory = tmp_path / "consumer"
    directory.mkdir()
    (directory / EVALUATION_KEYS_FILE).write_bytes(b"earlier")
    with pytest.raises(FileExistsError):
        keys.save(directory)
    assert (directory / EVALUATION_KEYS_FILE).read_bytes() == b"earlier"
    assert not (directory / SECRET_KEY_FILE).exists() and not (directory / PARAMETERS_FILE).exists()


def test_loading_keys_names_a_missing_or_broken_file(keys: ConsumerKeys, tmp_path: Path) -> None:
    directory = tmp_path / "consumer"
    keys.save(directory)
    (directory / SECRET_KEY_FILE).write_bytes(b"broken")
    _refused(lambda: ConsumerKeys.load(directory), "not a valid secret key")
    (directory / SECRET_KEY_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="CKKS secret key is missing"):
        ConsumerKeys.load(directory)


def test_consumer_keys_refuse_pickling_and_show_no_secret(keys: ConsumerKeys) -> None:
    for action in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError, match="secret key"):
            action(keys)
    assert repr(keys) == (
        f"ConsumerKeys(parameters={PARAMETERS}, rotation_steps=(-3, 1, 16), relinearization=False)"
    )


def test_encrypt_refuses_values_that_do_not_fit(keys: ConsumerKeys) -> None:
    _refused(lambda: keys.encrypt(np.zeros(SLOTS + 1)), "1 to 4096 values")
    _refused(lambda: keys.encrypt(np.zeros((2, 2))), "1-D")
    _refused(lambda: keys.encrypt(np.array([1.0, np.nan])), "NaN")
    _refused(lambda: keys.decrypt(b"garbage", 10), "not a valid ciphertext")
    _refused(lambda: keys.decrypt(keys.encrypt(np.ones(2)), 0), "count")


def test_replicate_pads_to_a_power_of_two_and_repeats_over_the_slots() -> None:
    vector = np.arange(1.0, 385.0)
    packed = replicate(vector, SLOTS)
    assert padded_dimension(384) == 512 and padded_dimension(128) == 128 and padded_dimension(1) == 1
    assert packed.shape == (SLOTS,)
    assert np.array_equal(packed[:384], vector) and not packed[384:512].any()
    assert np.array_equal(packed[512:1024], packed[:512])
    _refused(lambda: replicate(np.zeros(5000), SLOTS), "needs 8192 slots")
    _refused(lambda: replicate(np.zeros((2, 4)), SLOTS), "1-D")
    _refused(lambda: replicate(np.array([np.inf]), SLOTS), "infinite")


@pytest.fixture(scope="module")
def relinearizing_keys() -> ConsumerKeys:
    return ConsumerKeys.generate(PARAMETERS, [1], relinearization=True)


def test_a_relinearization_key_lets_a_node_multiply_two_ciphertexts(relinearizing_keys: ConsumerKeys) -> None:
    import tenseal.sealapi as seal

    node = EvaluationContext.from_bytes(PARAMETERS, relinearizing_keys.evaluation_keys())
    values = _values(5)
    query = node.load_ciphertext(relinearizing_keys.encrypt(values))
    square = seal.Ciphertext()
    node.evaluator.square(query, square)
    node.evaluator.relinearize_inplace(square, node.relin_keys)
    assert square.size() == 2
    node.evaluator.rescale_to_next_inplace(square)
    node.evaluator.rotate_vector_inplace(square, 1, node.galois_keys)  # the Galois keys travel alongside
    decrypted = relinearizing_keys.decrypt(node.ciphertext_bytes(square), SLOTS)
    assert np.abs(decrypted - np.roll(values**2, -1)).max() < 1e-5
    assert relinearizing_keys.relinearization and "relinearization=True" in repr(node)


def test_keys_without_relinearization_keep_their_bytes_and_a_node_cannot_multiply_ciphertexts(
    keys: ConsumerKeys, node: EvaluationContext
) -> None:
    assert not keys.relinearization
    assert keys.evaluation_keys()[:2] == b"\x5e\xa1"  # SEAL's own Galois-keys bytes, as before
    _refused(lambda: node.relin_keys, "no relinearization key")
    _refused(lambda: EvaluationContext.keyless(PARAMETERS).relin_keys, "no relinearization key")


def test_relinearization_keys_are_saved_and_loaded_with_the_other_keys(
    relinearizing_keys: ConsumerKeys, tmp_path: Path
) -> None:
    relinearizing_keys.save(tmp_path / "consumer")
    loaded = ConsumerKeys.load(tmp_path / "consumer")
    assert loaded.relinearization and loaded.evaluation_keys() == relinearizing_keys.evaluation_keys()
    assert "relinearization=True" in repr(loaded)


def test_a_broken_frame_of_evaluation_keys_is_refused(relinearizing_keys: ConsumerKeys) -> None:
    framed = relinearizing_keys.evaluation_keys()
    header = framed[:8]
    galois_length = int.from_bytes(framed[8:16], "big")
    galois, relin = framed[16 : 16 + galois_length], framed[16 + galois_length :]
    for data, fragment in [
        (header + bytes(4), "frame holds no Galois keys"),
        (header + (len(framed)).to_bytes(8, "big") + galois + relin, "frame holds no Galois keys"),
        (header + (0).to_bytes(8, "big") + galois + relin, "frame holds no Galois keys"),
        (header + galois_length.to_bytes(8, "big") + galois + b"garbage", "not a valid relinearization key"),
        (header + galois_length.to_bytes(8, "big") + galois, "frame holds no Galois keys"),
        (header + (galois_length - 7).to_bytes(8, "big") + galois + relin, "not a valid"),
    ]:
        _refused(lambda data=data: EvaluationContext.from_bytes(PARAMETERS, data), fragment)

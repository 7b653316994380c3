"""Encrypted similarity scores: the node's packed kernel against numpy, and what it refuses.

Real SEAL objects: one consumer's keys and one node's encoded patents per module (synthetic unit vectors
from a seeded generator; the kernel's arithmetic does not depend on their content).
"""

from __future__ import annotations

import numpy as np
import pytest

from crypto.ckks import CkksInputError, CkksParameters, ConsumerKeys, EvaluationContext
from models.matching.encrypted_scores import (
    MAX_DIMENSION,
    PackedPatents,
    ScoreTiming,
    baby_giant_split,
    decrypt_scores,
    encrypt_query,
    rotation_steps,
)

PARAMETERS = CkksParameters()
SLOTS = PARAMETERS.slots
DIMENSION = 128
PATENTS = 9_000  # a full block of 8,192 (2 x 4,096 slots) and a partial second


def _unit_rows(count: int, dimension: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((count, dimension))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def keys() -> ConsumerKeys:
    return ConsumerKeys.generate(PARAMETERS, rotation_steps(DIMENSION))


@pytest.fixture(scope="module")
def node(keys: ConsumerKeys) -> EvaluationContext:
    return EvaluationContext.from_bytes(PARAMETERS, keys.evaluation_keys())


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return _unit_rows(PATENTS, DIMENSION, seed=7)


@pytest.fixture(scope="module")
def packed(vectors: np.ndarray) -> PackedPatents:
    return PackedPatents.encode(EvaluationContext.keyless(PARAMETERS), vectors)


@pytest.fixture(scope="module")
def query() -> np.ndarray:
    return _unit_rows(1, DIMENSION, seed=8)[0]


def _scores(
    keys: ConsumerKeys, node: EvaluationContext, packed: PackedPatents, query: np.ndarray, **options: object
) -> np.ndarray:
    blocks = packed.score(encrypt_query(keys, query), node, query_dimension=query.size, **options)  # type: ignore[arg-type]
    assert len(blocks) == packed.block_count
    return decrypt_scores(keys, blocks, packed.count)


def _assert_matches_numpy(scores: np.ndarray, expected: np.ndarray) -> None:
    assert scores.shape == expected.shape
    assert np.abs(scores - expected).max() < 1e-3
    assert np.array_equal(np.argsort(-scores)[:10], np.argsort(-expected)[:10])


def test_the_split_and_the_rotation_keys_follow_the_dimension() -> None:
    assert baby_giant_split(128) == (16, 8) and rotation_steps(128) == (1, 16)
    assert baby_giant_split(384) == (32, 16) and rotation_steps(384) == (1, 32)
    assert baby_giant_split(64) == (8, 8) and baby_giant_split(2) == (2, 1) and rotation_steps(2) == (1,)
    assert rotation_steps(1) == ()


def test_scores_over_several_blocks_and_a_partial_one_equal_numpy(
    keys: ConsumerKeys, node: EvaluationContext, packed: PackedPatents, vectors: np.ndarray
) -> None:
    assert packed.block_count == 2 and packed.block_size == 2 * SLOTS
    for seed in (8, 9):
        query = _unit_rows(1, DIMENSION, seed=seed)[0]
        _assert_matches_numpy(_scores(keys, node, packed, query), vectors @ query)


@pytest.mark.parametrize("count", [1_000, SLOTS + 1_000, 2 * SLOTS])
def test_scores_within_one_block_equal_numpy(
    keys: ConsumerKeys, node: EvaluationContext, vectors: np.ndarray, query: np.ndarray, count: int
) -> None:
    packed = PackedPatents.encode(EvaluationContext.keyless(PARAMETERS), vectors[:count])
    assert packed.block_count == 1
    _assert_matches_numpy(_scores(keys, node, packed, query), vectors[:count] @ query)


@pytest.mark.parametrize("dimension", [384, 64])
def test_other_dimensions_score_alike_384_padded_to_512(dimension: int) -> None:
    keys = ConsumerKeys.generate(PARAMETERS, rotation_steps(dimension))
    node = EvaluationContext.from_bytes(PARAMETERS, keys.evaluation_keys())
    vectors = _unit_rows(300, dimension, seed=dimension)
    packed = PackedPatents.encode(node, vectors)
    assert (
        packed.memory_bytes == 1 * 2 ** (dimension - 1).bit_length() * 2 * PARAMETERS.poly_modulus_degree * 8
    )
    query = _unit_rows(1, dimension, seed=1)[0]
    _assert_matches_numpy(_scores(keys, node, packed, query), vectors @ query)


@pytest.mark.parametrize(("count", "dimension"), [(3, 384), (40, 100), (1, 128)])
def test_few_patents_in_a_padded_dimension_score_alike(count: int, dimension: int) -> None:
    # With fewer patents than the padding (512 - 384), whole diagonals are zero: they are left out.
    keys = ConsumerKeys.generate(PARAMETERS, rotation_steps(dimension))
    node = EvaluationContext.from_bytes(PARAMETERS, keys.evaluation_keys())
    vectors = _unit_rows(count, dimension, seed=count)
    packed = PackedPatents.encode(node, vectors)
    query = _unit_rows(1, dimension, seed=2)[0]
    _assert_matches_numpy(_scores(keys, node, packed, query), vectors @ query)


def test_patents_encoded_once_serve_another_consumer(packed: PackedPatents, vectors: np.ndarray) -> None:
    other = ConsumerKeys.generate(PARAMETERS, rotation_steps(DIMENSION))
    node = EvaluationContext.from_bytes(PARAMETERS, other.evaluation_keys())
    query = _unit_rows(1, DIMENSION, seed=10)[0]
    _assert_matches_numpy(_scores(other, node, packed, query), vectors @ query)


def test_a_loaded_ciphertext_object_scores_like_its_bytes(
    keys: ConsumerKeys, node: EvaluationContext, packed: PackedPatents, vectors: np.ndarray, query: np.ndarray
) -> None:
    loaded = node.load_ciphertext(encrypt_query(keys, query))
    blocks = packed.score(loaded, node, query_dimension=DIMENSION)
    _assert_matches_numpy(decrypt_scores(keys, blocks, PATENTS), vectors @ query)


def test_the_cache_size_and_the_timing_record_are_reported(
    keys: ConsumerKeys, node: EvaluationContext, packed: PackedPatents, query: np.ndarray
) -> None:
    assert (
        packed.memory_bytes == 2 * DIMENSION * 2 * PARAMETERS.poly_modulus_degree * 8
    )  # 2 primes per plaintext
    timing = ScoreTiming()
    packed.score(encrypt_query(keys, query), node, query_dimension=DIMENSION, timing=timing)
    assert timing.blocks == 2
    assert min(timing.load_s, timing.baby_s, timing.blocks_s, timing.finish_s) > 0
    assert timing.total_s == pytest.approx(timing.load_s + timing.baby_s + timing.blocks_s + timing.finish_s)


def test_results_leave_at_the_last_level(
    keys: ConsumerKeys, node: EvaluationContext, packed: PackedPatents, query: np.ndarray
) -> None:
    import tenseal.sealapi as seal

    from crypto.ckks import _load_bytes

    block = packed.score(encrypt_query(keys, query), node, query_dimension=DIMENSION)[0]
    result = seal.Ciphertext()
    _load_bytes(result, block, PARAMETERS.seal_context(), "ciphertext")
    assert result.parms_id() == node.last_parms_id and result.coeff_modulus_size() == 1
    assert len(block) < 2 * PARAMETERS.poly_modulus_degree * 8 * 1.01


def test_noise_moves_scores_by_about_its_standard_deviation_and_differs_per_call(
    keys: ConsumerKeys, node: EvaluationContext, packed: PackedPatents, vectors: np.ndarray, query: np.ndarray
) -> None:
    expected = vectors @ query
    first = _scores(keys, node, packed, query, noise_std=0.05) - expected
    second = _scores(keys, node, packed, query, noise_std=0.05) - expected
    for deviation in (first, second):
        assert 0.045 < deviation.std() < 0.055  # 9,000 draws: the sample std is within 2% at 5 sigma
        assert abs(deviation.mean()) < 0.003
    assert np.abs(first - second).max() > 0.01
    assert np.abs(_scores(keys, node, packed, query, noise_std=0.0) - expected).max() < 1e-3


@pytest.mark.parametrize("noise_std", [-0.1, float("nan"), 11.0, True])
def test_noise_outside_its_range_is_refused(
    keys: ConsumerKeys, node: EvaluationContext, packed: PackedPatents, query: np.ndarray, noise_std: float
) -> None:
    with pytest.raises(CkksInputError, match=r"noise_std must be a number in 0\.\.10"):
        packed.score(encrypt_query(keys, query), node, query_dimension=DIMENSION, noise_std=noise_std)


def test_a_query_with_the_wrong_dimension_is_refused(
    keys: ConsumerKeys, node: EvaluationContext, packed: PackedPatents
) -> None:
    query = _unit_rows(1, 64, seed=1)[0]
    with pytest.raises(CkksInputError) as caught:
        packed.score(encrypt_query(keys, query), node, query_dimension=64)
    assert caught.value.reason == "the query has 64 dimensions; this node's patent vectors have 128"
    with pytest.raises(CkksInputError, match=f"at most {MAX_DIMENSION} values"):
        encrypt_query(keys, np.ones(MAX_DIMENSION + 1))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"garbage", "not a valid ciphertext for these parameters"),
        (bytes(400_000), "bytes; at most"),
    ],
)
def test_a_query_that_is_not_a_ciphertext_is_refused(
    node: EvaluationContext, packed: PackedPatents, data: bytes, reason: str
) -> None:
    with pytest.raises(CkksInputError, match=reason):
        packed.score(data, node, query_dimension=DIMENSION)


def test_a_query_at_the_wrong_level_is_refused(
    keys: ConsumerKeys, node: EvaluationContext, packed: PackedPatents, query: np.ndarray
) -> None:
    lowered = node.ciphertext_bytes(node.load_ciphertext(encrypt_query(keys, query)))
    with pytest.raises(CkksInputError, match="must be at the first data level"):
        packed.score(lowered, node, query_dimension=DIMENSION)


def test_a_missing_rotation_key_is_refused_naming_the_step(packed: PackedPatents, query: np.ndarray) -> None:
    keys = ConsumerKeys.generate(PARAMETERS, [1])
    node = EvaluationContext.from_bytes(PARAMETERS, keys.evaluation_keys())
    with pytest.raises(CkksInputError, match="no Galois key for a rotation by 16 slots"):
        packed.score(encrypt_query(keys, query), node, query_dimension=DIMENSION)


def test_decrypting_needs_the_consumers_keys(
    keys: ConsumerKeys, node: EvaluationContext, packed: PackedPatents, vectors: np.ndarray, query: np.ndarray
) -> None:
    blocks = packed.score(encrypt_query(keys, query), node, query_dimension=DIMENSION)
    with pytest.raises(TypeError, match="needs the consumer's ConsumerKeys"):
        decrypt_scores(node, blocks, PATENTS)  # type: ignore[arg-type]
    stranger = ConsumerKeys.generate(PARAMETERS, rotation_steps(DIMENSION))
    assert np.abs(decrypt_scores(stranger, blocks, PATENTS) - vectors @ query).mean() > 1.0


def test_decrypting_refuses_a_wrong_number_of_blocks(
    keys: ConsumerKeys, node: EvaluationContext, packed: PackedPatents, query: np.ndarray
) -> None:
    blocks = packed.score(encrypt_query(keys, query), node, query_dimension=DIMENSION)
    with pytest.raises(CkksInputError, match="9000 scores come in 2 block"):
        decrypt_scores(keys, blocks[:1], PATENTS)
    with pytest.raises(CkksInputError, match="not a valid ciphertext"):
        decrypt_scores(keys, [blocks[0], b"garbage"], PATENTS)


@pytest.mark.parametrize(
    ("vectors", "reason"),
    [
        (np.ones(4), "n x d array"),
        (np.zeros((0, 128)), "n x d array"),
        (np.full((2, 4), np.nan), "NaN"),
        (np.ones((2, 4)), "unit vectors"),
        (np.zeros((2, 4)), "all zero"),
        (np.zeros((2, 1024)), "at most 512"),
    ],
)
def test_patent_vectors_that_cannot_be_packed_are_refused(vectors: np.ndarray, reason: str) -> None:
    with pytest.raises(CkksInputError, match=reason):
        PackedPatents.encode(EvaluationContext.keyless(PARAMETERS), vectors)

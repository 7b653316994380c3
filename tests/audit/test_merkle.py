"""The Merkle tree against RFC 9162 / RFC 6962 test data and against a literal reference implementation."""

from __future__ import annotations

import hashlib
import random
import time

import pytest
from pymerkle import InmemoryTree

from audit.merkle import EMPTY_ROOT, MerkleTree, leaf_hash, node_hash
from audit.proofs import verify_consistency, verify_inclusion

# The eight leaves of the certificate-transparency / transparency-dev test data.
LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]

# Root of the tree of the first n leaves, n = 1..8 (RFC 6962 test vectors).
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]

# (leaf index, tree size, proof) from the same test data.
INCLUSION_VECTORS = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]

# (old size, new size, proof) from the same test data.
CONSISTENCY_VECTORS = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]


# --- A literal transcription of RFC 9162 §2.1, slow and obviously right. ---


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = _k(n)
    return hashlib.sha256(b"\x01" + ref_mth(leaves[:k]) + ref_mth(leaves[k:])).digest()


def ref_path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*ref_path(m, leaves[:k]), ref_mth(leaves[k:])]
    return [*ref_path(m - k, leaves[k:]), ref_mth(leaves[:k])]


def ref_subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if b else [ref_mth(leaves)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, leaves[:k], b), ref_mth(leaves[k:])]
    return [*ref_subproof(m - k, leaves[k:], False), ref_mth(leaves[:k])]


def ref_proof(m: int, leaves: list[bytes]) -> list[bytes]:
    return ref_subproof(m, leaves, True)


def _tree(leaves: list[bytes]) -> MerkleTree:
    return MerkleTree(leaf_hash(leaf) for leaf in leaves)


def _random_leaves(rng: random.Random, n: int) -> list[bytes]:
    return [rng.randbytes(rng.randrange(0, 40)) for _ in range(n)]


# --- Known vectors ---


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert MerkleTree().root() == EMPTY_ROOT
    assert ref_mth([]) == EMPTY_ROOT


def test_leaf_and_node_hashes_use_distinct_prefixes() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    assert leaf_hash(b"a" * 32 + b"b" * 32) != node_hash(b"a" * 32, b"b" * 32)


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_rfc6962_vectors(size: int) -> None:
    tree = _tree(LEAVES)
    assert tree.root(size).hex() == ROOTS[size - 1]
    assert ref_mth(LEAVES[:size]).hex() == ROOTS[size - 1]


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_inclusion_proofs_match_vectors(index: int, size: int, proof: list[str]) -> None:
    tree = _tree(LEAVES)
    assert [h.hex() for h in tree.inclusion_proof(index, size)] == proof
    verify_inclusion(
        leaf_hash(LEAVES[index]), index, size, [bytes.fromhex(h) for h in proof], tree.root(size)
    )


@pytest.mark.parametrize(("first", "second", "proof"), CONSISTENCY_VECTORS)
def test_consistency_proofs_match_vectors(first: int, second: int, proof: list[str]) -> None:
    tree = _tree(LEAVES)
    assert [h.hex() for h in tree.consistency_proof(first, second)] == proof
    verify_consistency(first, second, tree.root(first), tree.root(second), [bytes.fromhex(h) for h in proof])


# --- Against the reference implementation ---


def test_every_proof_of_small_trees_matches_reference() -> None:
    rng = random.Random(9162)
    leaves = _random_leaves(rng, 40)
    tree = _tree(leaves)
    for size in range(1, len(leaves) + 1):
        root = ref_mth(leaves[:size])
        assert tree.root(size) == root
        for index in range(size):
            proof = tree.inclusion_proof(index, size)
            assert proof == ref_path(index, leaves[:size])
            verify_inclusion(leaf_hash(leaves[index]), index, size, proof, root)
        for first in range(1, size + 1):
            proof = tree.consistency_proof(first, size)
            assert proof == (ref_proof(first, leaves[:size]) if first < size else [])
            verify_consistency(first, size, tree.root(first), root, proof)


@pytest.mark.parametrize("seed", range(6))
def test_random_sizes_match_reference(seed: int) -> None:
    rng = random.Random(seed)
    leaves = _random_leaves(rng, rng.randrange(41, 700))
    tree = _tree(leaves)
    for _ in range(10):
        size = rng.randrange(1, len(leaves) + 1)
        root = ref_mth(leaves[:size])
        assert tree.root(size) == root
        index = rng.randrange(size)
        assert tree.inclusion_proof(index, size) == ref_path(index, leaves[:size])
        first = rng.randrange(1, size + 1)
        expected = ref_proof(first, leaves[:size]) if first < size else []
        assert tree.consistency_proof(first, size) == expected
        verify_consistency(first, size, tree.root(first), root, expected)


def test_roots_match_pymerkle_as_second_implementation() -> None:
    rng = random.Random(6962)
    leaves = _random_leaves(rng, 130)
    ours = _tree(leaves)
    theirs = InmemoryTree(algorithm="sha256")
    for leaf in leaves:
        theirs.append_entry(leaf)
    for size in range(len(leaves) + 1):
        assert ours.root(size) == theirs.get_root(size)


def test_tree_rejects_out_of_range_requests() -> None:
    tree = _tree(LEAVES[:5])
    with pytest.raises(ValueError):
        tree.root(6)
    with pytest.raises(ValueError):
        tree.inclusion_proof(5, 5)
    with pytest.raises(ValueError):
        tree.inclusion_proof(0, 0)
    with pytest.raises(ValueError):
        tree.consistency_proof(4, 3)
    with pytest.raises(ValueError):
        tree.append(b"short")
    with pytest.raises(IndexError):
        tree.leaf(5)
    assert tree.consistency_proof(0, 5) == []
    assert tree.leaf(4) == leaf_hash(LEAVES[4])


def test_large_tree_heads_and_proofs_are_fast() -> None:
    hashes = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(100_000)]
    tree = MerkleTree(hashes)
    started = time.perf_counter()
    root = tree.root()
    for index in range(0, 100_000, 997):
        verify_inclusion(hashes[index], index, 100_000, tree.inclusion_proof(index), root)
    verify_consistency(65_537, 100_000, tree.root(65_537), root, tree.consistency_proof(65_537))
    elapsed = time.perf_counter() - started
    assert elapsed < 0.5, f"101 proofs over 100k leaves took {elapsed:.3f}s"

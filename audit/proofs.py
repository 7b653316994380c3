"""Pure checkers for RFC 9162 inclusion and consistency proofs.

Each checker validates the index, the sizes and the exact proof length before it hashes anything, then
recomputes the root(s) bottom up and compares them with the trusted ones. A failure raises `InvalidProof`
(or its subclass `RootMismatch`, which carries the expected and calculated roots); success returns None.

The bit arithmetic: for leaf `index` in a tree of `size` leaves, the proof has `inner` hashes for the levels
where the path to the leaf and the path to the last leaf still differ (the bit length of index ^ (size - 1)),
followed by one hash per 1 bit of the index above those levels ("border" hashes, always left siblings).
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from audit.errors import InvalidProof, RootMismatch
from audit.merkle import HASH_SIZE, node_hash


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that `proof` puts the leaf hashing to `leaf_hash` at `index` in the `tree_size` tree with `root`.

    Raises InvalidProof when the index, size, proof length or a hash length is wrong, RootMismatch when the
    proof leads to another root.
    """
    _check_hash("root", root)
    calculated = root_from_inclusion_proof(leaf_hash, index, tree_size, proof)
    _check_match(root, calculated)


def root_from_inclusion_proof(leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes]) -> bytes:
    """Return the root that `proof` implies for `leaf_hash` at `index` in a tree of `tree_size` leaves.

    Raises InvalidProof when the index, size, proof length or a hash length is wrong.
    """
    if not 0 <= index < tree_size:
        raise InvalidProof(f"leaf index {index} is outside a tree of {tree_size} leaves")
    _check_hash("leaf hash", leaf_hash)
    inner, border = _decompose(index, tree_size)
    if len(proof) != inner + border:
        raise InvalidProof(
            f"an inclusion proof for leaf {index} of {tree_size} has {inner + border} hashes, "
            f"got {len(proof)}"
        )
    _check_path(proof)
    seed = _chain_inner(leaf_hash, proof[:inner], index)
    return _chain_border(seed, proof[inner:])


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]) -> None:
    """Check that the tree of `size1` leaves with `root1` is a prefix of the tree of `size2` with `root2`.

    An empty tree is a prefix of every tree (empty proof). Raises InvalidProof when the sizes, the proof
    length or a hash length is wrong, RootMismatch when the proof does not lead to both roots.
    """
    _check_hash("first root", root1)
    _check_hash("second root", root2)
    if not 0 <= size1 <= size2:
        raise InvalidProof(f"no consistency proof exists from size {size1} to size {size2}")
    if size1 in (0, size2):
        if proof:
            raise InvalidProof(f"a consistency proof from size {size1} to {size2} is empty, got {len(proof)}")
        if size1 == size2:
            _check_match(root2, root1)
        return
    # The proof walks up from the last leaf of the old tree, starting at the largest complete subtree that
    # ends there (of width 2**shift); when that subtree is the whole old tree its hash is root1 itself.
    inner, border = _decompose(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1
    inner -= shift
    if size1 == 1 << shift:
        seed, rest = root1, proof
    else:
        if not proof:
            raise InvalidProof(f"a consistency proof from size {size1} to {size2} can not be empty")
        seed, rest = proof[0], proof[1:]
    expected_length = inner + border + (len(proof) - len(rest))
    if len(proof) != expected_length:
        raise InvalidProof(
            f"a consistency proof from size {size1} to {size2} has {expected_length} hashes, got {len(proof)}"
        )
    _check_path(proof)
    mask = (size1 - 1) >> shift
    old_root = _chain_border(_chain_inner_right(seed, rest[:inner], mask), rest[inner:])
    _check_match(root1, old_root, which="first root")
    new_root = _chain_border(_chain_inner(seed, rest[:inner], mask), rest[inner:])
    _check_match(root2, new_root, which="second root")


def _decompose(index: int, size: int) -> tuple[int, int]:
    """Split the inclusion proof length of `index` in a tree of `size` into (inner, border) hash counts."""
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


def _chain_inner(seed: bytes, path: Sequence[bytes], index: int) -> bytes:
    """Hash up through the inner levels; bit i of the index says on which side the sibling lies."""
    for level, sibling in enumerate(path):
        seed = node_hash(sibling, seed) if (index >> level) & 1 else node_hash(seed, sibling)
    return seed


def _chain_inner_right(seed: bytes, path: Sequence[bytes], index: int) -> bytes:
    """Like `_chain_inner`, but keep only left siblings: the root of the old tree ignores newer leaves."""
    for level, sibling in enumerate(path):
        if (index >> level) & 1:
            seed = node_hash(sibling, seed)
    return seed


def _chain_border(seed: bytes, path: Sequence[bytes]) -> bytes:
    """Hash up through the border levels, where every sibling is a complete subtree on the left."""
    for sibling in path:
        seed = node_hash(sibling, seed)
    return seed


def _check_hash(what: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise InvalidProof(f"the {what} must be {HASH_SIZE} bytes")


def _check_path(proof: Sequence[bytes]) -> None:
    for position, value in enumerate(proof):
        if not isinstance(value, bytes) or len(value) != HASH_SIZE:
            raise InvalidProof(f"proof hash #{position} is not {HASH_SIZE} bytes")


def _check_match(expected: bytes, calculated: bytes, *, which: str = "root") -> None:
    if not hmac.compare_digest(expected, calculated):
        raise RootMismatch(expected, calculated, which=which)

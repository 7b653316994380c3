"""Broken proofs stored as data: every mutation of a valid proof is rejected, the valid proof accepted.

Size mutations (+1, -1, *2, /2) are replayed with the real root of the mutated size, i.e. a proof for one
head is presented against another genuine head of the same log: the attack a verifier meets in practice.
Doubling or halving is also tried against the unchanged root.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

import pytest

from audit.errors import InvalidProof, RootMismatch
from audit.merkle import MerkleTree, leaf_hash
from audit.proofs import verify_consistency, verify_inclusion

_RNG = random.Random(20240501)
_LEAVES = [_RNG.randbytes(24) for _ in range(70)]
_TREE = MerkleTree(leaf_hash(leaf) for leaf in _LEAVES)
_GARBAGE = bytes(range(32))


def _root(size: int) -> bytes:
    """The real root of the log at `size`, or something that is not a root when the size does not exist."""
    return _TREE.root(size) if 0 <= size <= _TREE.size else b"\xee" * 32


def _proof_mutations(proof: list[bytes]) -> list[tuple[str, list[bytes]]]:
    out = [
        ("garbage appended", [*proof, _GARBAGE]),
        ("garbage prepended", [_GARBAGE, *proof]),
    ]
    if proof:
        out.append(("proof emptied", []))
        out.append(("last hash truncated", proof[:-1]))
        out.append(("short hash", [*proof[:-1], proof[-1][:31]]))
    for i, value in enumerate(proof):
        for byte, bit in ((0, 0x01), (31, 0x80)):
            flipped = bytearray(value)
            flipped[byte] ^= bit
            out.append((f"hash {i} byte {byte} bit flipped", [*proof[:i], bytes(flipped), *proof[i + 1 :]]))
        out.append((f"hash {i} removed", proof[:i] + proof[i + 1 :]))
        out.append((f"hash {i} duplicated", [*proof[: i + 1], value, *proof[i + 1 :]]))
        out.append((f"garbage inserted at {i}", [*proof[:i], _GARBAGE, *proof[i:]]))
    return out


@dataclass(frozen=True)
class InclusionCase:
    leaf_hash: bytes
    index: int
    size: int
    proof: list[bytes]
    root: bytes


def _inclusion_cases() -> list[InclusionCase]:
    pairs = [
        (0, 1),
        (0, 2),
        (1, 2),
        (0, 8),
        (5, 8),
        (2, 3),
        (1, 5),
        (6, 7),
        (31, 64),
        (32, 33),
        (40, 70),
        (69, 70),
    ]
    return [InclusionCase(_TREE.leaf(i), i, n, _TREE.inclusion_proof(i, n), _TREE.root(n)) for i, n in pairs]


def _inclusion_mutations(case: InclusionCase) -> list[tuple[str, InclusionCase]]:
    other_leaf = _TREE.leaf((case.index + 1) % _TREE.size)
    out = [
        ("index + 1", replace(case, index=case.index + 1)),
        ("index - 1", replace(case, index=case.index - 1)),
        ("wrong leaf", replace(case, leaf_hash=other_leaf)),
        ("leaf hash of raw entry bytes", replace(case, leaf_hash=b"\x00" * 32)),
        ("empty root", replace(case, root=b"")),
        ("random root", replace(case, root=_RNG.randbytes(32))),
        ("root of empty tree", replace(case, root=MerkleTree().root())),
    ]
    for label, size in (
        ("size + 1", case.size + 1),
        ("size - 1", case.size - 1),
        ("size * 2", case.size * 2),
        ("size / 2", case.size // 2),
    ):
        out.append((label, replace(case, size=size, root=_root(size))))
    # Doubling or halving the size changes the proof's shape, so it fails even against the same root.
    out.append(("size * 2, same root", replace(case, size=case.size * 2)))
    out.append(("size / 2, same root", replace(case, size=case.size // 2)))
    out += [(label, replace(case, proof=proof)) for label, proof in _proof_mutations(case.proof)]
    return out


@pytest.mark.parametrize("case", _inclusion_cases(), ids=lambda c: f"leaf{c.index}-of-{c.size}")
def test_inclusion_mutations_are_rejected(case: InclusionCase) -> None:
    verify_inclusion(case.leaf_hash, case.index, case.size, case.proof, case.root)
    for label, bad in _inclusion_mutations(case):
        with pytest.raises(InvalidProof):
            verify_inclusion(bad.leaf_hash, bad.index, bad.size, bad.proof, bad.root)
            pytest.fail(f"mutation accepted: {label}")


@dataclass(frozen=True)
class ConsistencyCase:
    size1: int
    size2: int
    root1: bytes
    root2: bytes
    proof: list[bytes]


def _consistency_cases() -> list[ConsistencyCase]:
    pairs = [
        (1, 2),
        (1, 8),
        (6, 8),
        (2, 5),
        (3, 7),
        (4, 7),
        (7, 8),
        (8, 9),
        (16, 70),
        (17, 64),
        (33, 70),
        (69, 70),
    ]
    return [
        ConsistencyCase(m, n, _TREE.root(m), _TREE.root(n), _TREE.consistency_proof(m, n)) for m, n in pairs
    ]


def _consistency_mutations(case: ConsistencyCase) -> list[tuple[str, ConsistencyCase]]:
    out = [
        ("roots swapped", replace(case, root1=case.root2, root2=case.root1)),
        ("first root empty", replace(case, root1=b"")),
        ("second root empty", replace(case, root2=b"")),
        ("first root random", replace(case, root1=_RNG.randbytes(32))),
        ("second root random", replace(case, root2=_RNG.randbytes(32))),
        (
            "sizes swapped",
            replace(case, size1=case.size2, size2=case.size1, root1=case.root2, root2=case.root1),
        ),
    ]
    for which in ("size1", "size2"):
        size = getattr(case, which)
        for label, mutated in (("+ 1", size + 1), ("- 1", size - 1), ("* 2", size * 2), ("/ 2", size // 2)):
            root_field = "root1" if which == "size1" else "root2"
            changes = {which: mutated, root_field: _root(mutated)}
            out.append((f"{which} {label}", replace(case, **changes)))
    out += [(label, replace(case, proof=proof)) for label, proof in _proof_mutations(case.proof)]
    return out


@pytest.mark.parametrize("case", _consistency_cases(), ids=lambda c: f"{c.size1}-to-{c.size2}")
def test_consistency_mutations_are_rejected(case: ConsistencyCase) -> None:
    verify_consistency(case.size1, case.size2, case.root1, case.root2, case.proof)
    for label, bad in _consistency_mutations(case):
        with pytest.raises(InvalidProof):
            verify_consistency(bad.size1, bad.size2, bad.root1, bad.root2, bad.proof)
            pytest.fail(f"mutation accepted: {label}")


def test_root_mismatch_reports_expected_and_calculated() -> None:
    proof = _TREE.inclusion_proof(5, 8)
    wrong_root = b"\x11" * 32
    with pytest.raises(RootMismatch) as caught:
        verify_inclusion(_TREE.leaf(5), 5, 8, proof, wrong_root)
    assert caught.value.expected == wrong_root
    assert caught.value.calculated == _TREE.root(8)
    assert wrong_root.hex() in str(caught.value)


def test_consistency_edge_cases() -> None:
    root5 = _TREE.root(5)
    verify_consistency(0, 5, MerkleTree().root(), root5, [])
    verify_consistency(5, 5, root5, root5, [])
    with pytest.raises(RootMismatch):
        verify_consistency(5, 5, root5, _TREE.root(6), [])
    with pytest.raises(InvalidProof, match="is empty"):
        verify_consistency(5, 5, root5, root5, [root5])
    with pytest.raises(InvalidProof, match="from size 6 to size 5"):
        verify_consistency(6, 5, _TREE.root(6), root5, [])

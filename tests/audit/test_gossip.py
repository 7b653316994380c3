"""judge_head: a node's new tree head against its heads kept before, on real trees and real signatures."""

from __future__ import annotations

import pytest

from audit import MerkleTree, SignedTreeHead, leaf_hash, sign_tree_head
from audit.gossip import ConsistencyEvidence, Verdict, judge_head
from crypto import Identity


def _tree(leaves: list[bytes]) -> MerkleTree:
    return MerkleTree(leaf_hash(leaf) for leaf in leaves)


def _head(node: Identity, tree: MerkleTree, size: int, second: int) -> SignedTreeHead:
    return sign_tree_head(node, "node-a", size, tree.root(size), f"2025-03-01T12:00:{second:02d}.000000Z")


def _proof(tree: MerkleTree, first: int, second: int) -> ConsistencyEvidence:
    return ConsistencyEvidence(first, second, tuple(tree.consistency_proof(first, second)))


HONEST = [f"entry {i}".encode() for i in range(40)]
# Another history of the same node: the first 12 entries agree, then it was rewritten.
REWRITTEN = HONEST[:12] + [f"rewritten {i}".encode() for i in range(12, 40)]


def test_the_first_head_is_kept_and_the_same_head_again_is_known(node: Identity) -> None:
    head = _head(node, _tree(HONEST), 10, 1)
    assert judge_head([], head).verdict is Verdict.CONSISTENT
    assert judge_head([head], head).verdict is Verdict.KNOWN


def test_a_grown_head_needs_a_proof_from_the_kept_one_and_passes_with_it(node: Identity) -> None:
    tree = _tree(HONEST)
    kept = [_head(node, tree, 10, 1)]
    grown = _head(node, tree, 30, 2)
    asked = judge_head(kept, grown)
    assert asked.verdict is Verdict.NEEDS_PROOF and asked.proof_needed == (10, 30)
    assert judge_head(kept, grown, _proof(tree, 10, 30)).verdict is Verdict.CONSISTENT


def test_a_proof_between_other_sizes_is_not_taken(node: Identity) -> None:
    tree = _tree(HONEST)
    kept = [_head(node, tree, 10, 1)]
    judged = judge_head(kept, _head(node, tree, 30, 2), _proof(tree, 11, 30))
    assert judged.verdict is Verdict.NEEDS_PROOF and judged.proof_needed == (10, 30)


def test_two_roots_for_one_size_are_equivocation(node: Identity) -> None:
    shown_to_coordinator = _head(node, _tree(HONEST), 20, 1)
    shown_to_regulator = _head(node, _tree(REWRITTEN), 20, 2)
    judged = judge_head([shown_to_coordinator], shown_to_regulator)
    assert judged.verdict is Verdict.EQUIVOCATION and judged.verdict.is_alarm
    assert judged.conflicting == shown_to_coordinator
    assert "two different roots for size 20" in judged.reason


def test_a_grown_head_over_a_rewritten_history_is_a_fork(node: Identity) -> None:
    kept = [_head(node, _tree(HONEST), 20, 1)]
    rewritten = _tree(REWRITTEN)
    # The node can only prove its own tree: the proof it gives leads to its rewritten root at size 20.
    judged = judge_head(kept, _head(node, rewritten, 30, 2), _proof(rewritten, 20, 30))
    assert judged.verdict is Verdict.FORK
    assert judged.conflicting == kept[0]
    assert "not consistent with the kept head of size 20" in judged.reason


def test_a_smaller_head_signed_after_a_larger_one_is_a_rollback(node: Identity) -> None:
    tree = _tree(HONEST)
    kept = [_head(node, tree, 10, 1), _head(node, tree, 30, 2)]
    restored = _head(node, _tree(HONEST[:25]), 25, 3)  # a backup of 25 entries, signed again later
    judged = judge_head(kept, restored)
    assert judged.verdict is Verdict.ROLLBACK
    assert judged.conflicting == kept[1]
    assert "lost entries" in judged.reason


def test_an_older_smaller_head_delivered_late_is_checked_against_the_next_larger_kept_one(
    node: Identity,
) -> None:
    tree = _tree(HONEST)
    kept = [_head(node, tree, 10, 1), _head(node, tree, 30, 5)]
    late = _head(node, tree, 20, 3)  # signed between the two kept heads, received after both
    asked = judge_head(kept, late)
    assert asked.verdict is Verdict.NEEDS_PROOF and asked.proof_needed == (20, 30)
    assert judge_head(kept, late, _proof(tree, 20, 30)).verdict is Verdict.CONSISTENT
    forged = _head(node, _tree(REWRITTEN), 20, 3)
    assert judge_head(kept, forged, _proof(_tree(REWRITTEN), 20, 30)).verdict is Verdict.FORK


def test_a_bit_flipped_proof_is_a_fork_not_a_pass(node: Identity) -> None:
    tree = _tree(HONEST)
    kept = [_head(node, tree, 13, 1)]
    proof = list(tree.consistency_proof(13, 37))
    proof[1] = bytes([proof[1][0] ^ 1]) + proof[1][1:]
    evidence = ConsistencyEvidence(13, 37, tuple(proof))
    assert judge_head(kept, _head(node, tree, 37, 2), evidence).verdict is Verdict.FORK


def test_heads_of_another_node_are_refused(node: Identity) -> None:
    tree = _tree(HONEST)
    other = sign_tree_head(node, "node-b", 5, tree.root(5), "2025-03-01T12:00:00.000000Z")
    with pytest.raises(ValueError, match="node-a"):
        judge_head([other], _head(node, tree, 10, 1))

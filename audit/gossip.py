"""Judging a node's tree head against the heads of it that a party kept before (tree-head gossip).

A node signs its tree heads with timestamps, and an honest node's heads only grow: every later head is
larger (or equal) and every head's tree is a prefix of every larger one. So a party that keeps a node's heads
can catch three kinds of misbehaviour, each with evidence signed by the node itself:

- **equivocation**: two heads of the same size with different roots (two different logs);
- **rollback**: a head signed *after* a larger one, so the log it describes lost entries;
- **fork**: a consistency proof from a kept head to a new one does not verify (history was rewritten, or the
  node shows another party another log).

`judge_head` is pure: it takes heads whose signatures the caller has verified (see `verify_tree_head`), all
of one node, and says what the new head is. When it needs a consistency proof it says between which
sizes, and the caller asks the node for one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from audit.errors import InvalidProof
from audit.heads import SignedTreeHead
from audit.merkle import EMPTY_ROOT
from audit.proofs import verify_consistency


class Verdict(StrEnum):
    KNOWN = "known"  # the same head was kept before
    CONSISTENT = "consistent"  # new, and consistent with every kept head
    NEEDS_PROOF = "needs_proof"  # a consistency proof between `proof_needed` sizes decides
    EQUIVOCATION = "equivocation"
    ROLLBACK = "rollback"
    FORK = "fork"

    @property
    def is_alarm(self) -> bool:
        return self in (Verdict.EQUIVOCATION, Verdict.ROLLBACK, Verdict.FORK)


@dataclass(frozen=True)
class ConsistencyEvidence:
    """A consistency proof between the trees of `first` and `second` entries, as a node gave it."""

    first: int
    second: int
    proof: tuple[bytes, ...]


@dataclass(frozen=True)
class Judgement:
    """What a new head is, why, and (for an alarm) the kept head it contradicts."""

    verdict: Verdict
    reason: str
    conflicting: SignedTreeHead | None = None
    proof_needed: tuple[int, int] | None = None


def judge_head(
    kept: Sequence[SignedTreeHead], head: SignedTreeHead, evidence: ConsistencyEvidence | None = None
) -> Judgement:
    """Judge `head` against the `kept` heads of its node; `evidence` is the proof a NEEDS_PROOF asked for.

    Raises ValueError if a kept head is of another node than `head`. Signatures are not checked here.
    """
    if any(other.node != head.node for other in kept):
        raise ValueError(f"the kept heads must all be of node {head.node!r}")
    size = head.tree_size
    for other in kept:
        if other.tree_size == size:
            if other.root_hash == head.root_hash:
                return Judgement(Verdict.KNOWN, f"the head of size {size} was kept before")
            return Judgement(
                Verdict.EQUIVOCATION,
                f"{head.node} signed two different roots for size {size}: {_when(other)} and {_when(head)}",
                conflicting=other,
            )
    for other in sorted(kept, key=lambda kept_head: kept_head.tree_size):
        if other.tree_size > size and other.timestamp < head.timestamp:
            return Judgement(
                Verdict.ROLLBACK,
                f"{head.node} signed a head of size {size} at {head.timestamp}, after it had signed size "
                f"{other.tree_size} at {other.timestamp}: its log lost entries",
                conflicting=other,
            )
    # One proof decides. Kept heads are consistent with each other, so if the new head's tree is a prefix of
    # the nearest larger kept one, every smaller kept tree (a prefix of that same tree) is a prefix of it.
    larger = min((h for h in kept if h.tree_size > size), key=lambda h: h.tree_size, default=None)
    smaller = max((h for h in kept if h.tree_size < size), key=lambda h: h.tree_size, default=None)
    if larger is not None:
        older, newer, kept_head = head, larger, larger
    elif smaller is not None:
        older, newer, kept_head = smaller, head, smaller
    else:
        return Judgement(Verdict.CONSISTENT, f"the first head kept of {head.node}")
    needed = (older.tree_size, newer.tree_size)
    if older.tree_size > 0 and (evidence is None or (evidence.first, evidence.second) != needed):
        return Judgement(
            Verdict.NEEDS_PROOF,
            f"a consistency proof from size {needed[0]} to {needed[1]} decides",
            proof_needed=needed,
        )
    proof = list(evidence.proof) if evidence is not None and older.tree_size > 0 else []
    try:
        if older.tree_size == 0 and older.root != EMPTY_ROOT:
            raise InvalidProof("a head of size 0 must carry the empty tree's root")
        verify_consistency(older.tree_size, newer.tree_size, older.root, newer.root, proof)
    except InvalidProof as failed:
        return Judgement(
            Verdict.FORK,
            f"{head.node}'s head of size {size} ({head.timestamp}) is not consistent with the kept head of "
            f"size {kept_head.tree_size} ({kept_head.timestamp}): {failed.reason}",
            conflicting=kept_head,
        )
    return Judgement(Verdict.CONSISTENT, f"consistent with the kept head of size {kept_head.tree_size}")


def _when(head: SignedTreeHead) -> str:
    return f"root {head.root_hash[:16]}… at {head.timestamp}"


def head_report(head: SignedTreeHead, evidence: ConsistencyEvidence | None = None) -> dict[str, Any]:
    """The JSON body that hands a head (and the proof asked for) to a party that keeps heads: what a node
    pushes and a regulator reports to the coordinator (``POST /audit/heads``, ``/audit/heads/observed``)."""
    report: dict[str, Any] = {"head": head.to_dict()}
    if evidence is not None:
        report["consistency"] = {
            "first": evidence.first,
            "second": evidence.second,
            "proof": [value.hex() for value in evidence.proof],
        }
    return report

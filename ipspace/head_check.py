"""A regulator's own check of a node's tree head against the heads the coordinator keeps of it.

The regulator trusts neither party: it fetches a fresh signed head straight from the node, fetches the heads
the coordinator kept (each verified here against the CA: the coordinator can withhold heads, not forge them),
and judges the node's head itself with ``audit.gossip.judge_head``, asking the node for the consistency proof
that decides. Then it reports the head to the coordinator, which judges it the same way and raises an alert
the dashboard shows when the node showed the two parties different logs.
"""

from __future__ import annotations

from dataclasses import dataclass

from audit import InvalidTreeHead, SignedTreeHead, verify_tree_head
from audit.gossip import ConsistencyEvidence, Judgement, Verdict, head_report, judge_head
from contracts.client import NodeClient, NodeRefused
from ipspace.audit_export import head_from_message
from ipspace.coordinator_client import CoordinatorClient


@dataclass(frozen=True)
class HeadCheck:
    """The node's head, the regulator's own judgement of it, and what the coordinator answered."""

    node: str
    head: SignedTreeHead
    judgement: Judgement
    kept: int
    coordinator_status: int
    coordinator_verdict: str

    @property
    def agrees(self) -> bool:
        """Whether the coordinator reached the regulator's own verdict."""
        return self.coordinator_verdict == self.judgement.verdict.value


def check_node(node: NodeClient, coordinator: CoordinatorClient, ca_cert_pem: bytes) -> HeadCheck:
    """Compare ``node``'s fresh head with the coordinator's kept heads of it; report it to the coordinator.

    Raises InvalidTreeHead if the node's own head does not verify, NodeRefused if the node refuses.
    """
    head = head_from_message(node.tree_head(fresh=True))
    verify_tree_head(head, ca_cert_pem)
    kept = _verified(coordinator.kept_heads(head.node), head.node, ca_cert_pem)
    judgement = judge_head(kept, head)
    evidence = None
    if judgement.verdict is Verdict.NEEDS_PROOF and judgement.proof_needed is not None:
        first, second = judgement.proof_needed
        try:
            proof = node.consistency_proof(first, second)
        except NodeRefused as refused:  # a node that can not prove its own head's history: no proof, a fork
            proof = []
            note = f"the node gave no consistency proof from {first} to {second}: {refused.reason}"
        else:
            note = None
        evidence = ConsistencyEvidence(first, second, tuple(proof))
        judgement = judge_head(kept, head, evidence)
        if note is not None and judgement.verdict is Verdict.FORK:
            judgement = Judgement(judgement.verdict, f"{judgement.reason} ({note})", judgement.conflicting)
    status, receipt = coordinator.report_head(head_report(head, evidence))
    return HeadCheck(head.node, head, judgement, len(kept), status, str(receipt.get("verdict", "")))


def _verified(items: list[dict], node: str, ca_cert_pem: bytes) -> list[SignedTreeHead]:
    """The coordinator's kept heads that verify as ``node``'s; one that does not is evidence of nothing."""
    heads = []
    for item in items:
        try:
            head = SignedTreeHead.from_dict(item.get("head"))
            verify_tree_head(head, ca_cert_pem)
        except InvalidTreeHead:
            continue
        if head.node == node:
            heads.append(head)
    return heads

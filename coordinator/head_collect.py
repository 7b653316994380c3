"""Pulling fresh signed tree heads from the nodes, on demand: a regulator's ``POST /audit/heads/collect``, and
the end of every training job (its model's provenance names each node's head at that moment).

Each node signs a head over every entry written so far (``GetTreeHead(fresh=true)``); when the kept heads ask
for it, the node's consistency proof follows (``GetConsistencyProof``, open to every member: hashes only).
Nodes are asked in parallel; a node that does not answer is reported, not waited for beyond the timeout.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from audit import InvalidTreeHead, SignedTreeHead
from audit.gossip import ConsistencyEvidence, Verdict
from contracts.client import NodeRefused
from coordinator.head_gossip import HeadGossip, HeadRefused, Receipt
from coordinator.settings import CoordinatorSettings, NodeEndpoint, SettingsError
from crypto import Identity

MAX_PARALLEL_NODES = 8
PULL_SOURCE = "pulled by the coordinator"


def collect_heads(
    gossip: HeadGossip, settings: CoordinatorSettings, identity: Identity
) -> list[tuple[str, Receipt | str]]:
    """Pull and judge a fresh head of every configured node: (node, receipt) or (node, why none came)."""
    if not settings.nodes:
        return []
    try:
        token = settings.read_token()
    except SettingsError as error:
        return [(node.name, str(error)) for node in settings.nodes]
    timeout_s = settings.node_timeout_s
    with ThreadPoolExecutor(min(MAX_PARALLEL_NODES, len(settings.nodes)), "heads") as pool:
        results = pool.map(
            lambda node: collect_head(gossip, node, identity, token, timeout_s), settings.nodes
        )
        return [(node.name, result) for node, result in zip(settings.nodes, results, strict=True)]


def collect_head(
    gossip: HeadGossip, node: NodeEndpoint, identity: Identity, token: str, timeout_s: float
) -> Receipt | str:
    """Pull one node's fresh head, with the consistency proof the kept heads ask for; or say why not."""
    try:
        with node.client(identity, token, timeout_s=timeout_s) as client:
            message = client.tree_head(fresh=True)
            head = SignedTreeHead.from_wire(
                message.head_json, message.signature, message.signing_certificate_pem
            )
            receipt = gossip.receive(head, None, source=PULL_SOURCE)
            if receipt.judgement.verdict is not Verdict.NEEDS_PROOF:
                return receipt
            first, second = receipt.judgement.proof_needed or (0, 0)
            proof = client.consistency_proof(first, second)
            return gossip.receive(head, ConsistencyEvidence(first, second, tuple(proof)), source=PULL_SOURCE)
    except NodeRefused as refused:
        return f"{refused.status.name}: {refused.reason}"
    except (InvalidTreeHead, HeadRefused) as invalid:
        return f"the node's head was refused: {invalid.reason}"

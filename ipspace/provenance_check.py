"""Checking a model's provenance record: offline, and against the training nodes' own audit logs.

Offline, ``coordinator.provenance.verify_provenance`` checks the coordinator's signature, the model's digest
and each node's signed head, with only the CA certificate. Against a node (its reader must be allowed to read
the node's audit log: a regulator, or the provider itself), `check_node_log` establishes, trusting nothing the
node or the coordinator says:

1. the node's current log extends the recorded head (its fresh signed head, and a consistency proof from the
   recorded size to it, verified here): nothing the head covered was rewritten or removed since;
2. the node's entries up to the recorded size hash to the recorded root: they are the entries it signed for;
3. among them are the job's own Train calls (method ``/ipspace.v1.Training/Train``, decision ``allow``, an
   agreement of the record, and the job's id as the entry's target, which the node takes from the signed
   job grant): the node did train for this job before the head was signed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from audit import (
    InvalidProof,
    InvalidTreeHead,
    MerkleTree,
    SignedTreeHead,
    decode_leaf,
    leaf_hash,
    verify_consistency,
    verify_tree_head,
)
from contracts.client import NodeClient, NodeRefused
from coordinator.provenance import VerifiedProvenance
from crypto import Identity
from ipspace.audit_export import head_from_message

TRAIN_METHOD = "/ipspace.v1.Training/Train"


@dataclass(frozen=True)
class NodeLogCheck:
    """One node's log against the record's head of it: ``ok``, or ``reason`` says what does not hold."""

    node: str
    ok: bool
    reason: str
    recorded_size: int
    current_size: int | None = None
    train_calls: int = 0


class _Failed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check_node_log(
    client: NodeClient,
    recorded: SignedTreeHead,
    job_id: str,
    agreements: Iterable[str],
    ca_cert_pem: bytes,
) -> NodeLogCheck:
    """Check that the node behind ``client`` still holds the log ``recorded`` (a verified head) signed, with
    allowed Train calls of job ``job_id`` under ``agreements`` in it. Never raises for what the node answers
    or refuses: the returned check says why it fails."""
    current_size: int | None = None
    try:
        current = _fresh_head(client, recorded.node, ca_cert_pem)
        current_size = current.tree_size
        _check_extends(client, recorded, current)
        leaves = client.entries(0, recorded.tree_size)
        train_calls = _train_calls(leaves, recorded, job_id, set(agreements))
    except _Failed as failed:
        return NodeLogCheck(recorded.node, False, failed.reason, recorded.tree_size, current_size)
    except NodeRefused as refused:
        reason = f"the node refused: {refused.status.name}: {refused.reason}"
        return NodeLogCheck(recorded.node, False, reason, recorded.tree_size, current_size)
    return NodeLogCheck(
        recorded.node,
        True,
        f"its log extends the recorded head; {train_calls} allowed Train calls of the job",
        recorded.tree_size,
        current_size,
        train_calls,
    )


def check_nodes(
    verified: VerifiedProvenance,
    addresses: Mapping[str, str],
    identity: Identity,
    token: str,
    *,
    timeout_s: float = 30.0,
) -> list[NodeLogCheck]:
    """`check_node_log` for every node of the record, at ``addresses`` (node name -> host:port).

    Raises ValueError when ``addresses`` names a node the record does not list; a node of the record without
    an address fails its check.
    """
    strangers = sorted(set(addresses) - set(verified.node_heads))
    if strangers:
        listed = ", ".join(sorted(verified.node_heads)) or "none"
        raise ValueError(f"{', '.join(strangers)}: not a node of the record (its nodes: {listed})")
    checks = []
    for name, head in sorted(verified.node_heads.items()):
        address = addresses.get(name)
        if address is None:
            reason = f"no address given for it: add --node {name}=HOST:PORT"
            checks.append(NodeLogCheck(name, False, reason, head.tree_size))
            continue
        with NodeClient(address, identity, token, timeout_s=timeout_s) as client:
            checks.append(
                check_node_log(client, head, verified.job_id, verified.agreements, identity.ca_cert_pem)
            )
    return checks


def record_gaps(verified: VerifiedProvenance) -> list[tuple[str, str]]:
    """(node, why) for each node of the job the record holds no trustworthy head of: a node that gave no
    head at the end of training, or whose head contradicted one the coordinator kept before."""
    gaps = [(item.node or f"provider {item.org}", item.reason) for item in verified.nodes_unheard]
    gaps += [(node, f"its head raised an alert: {why}") for node, why in sorted(verified.head_alerts.items())]
    return gaps


def _fresh_head(client: NodeClient, node: str, ca_cert_pem: bytes) -> SignedTreeHead:
    message = client.tree_head(fresh=True)
    try:
        head = head_from_message(message)
        verify_tree_head(head, ca_cert_pem)
    except InvalidTreeHead as invalid:
        raise _Failed(f"its fresh tree head does not verify: {invalid.reason}") from None
    if head.node != node:
        raise _Failed(f"the node at this address is {head.node!r}, not {node!r}")
    return head


def _check_extends(client: NodeClient, recorded: SignedTreeHead, current: SignedTreeHead) -> None:
    first, second = recorded.tree_size, current.tree_size
    if second < first:
        raise _Failed(
            f"its log has {second} entries now, fewer than the {first} its recorded head covers: "
            "entries were removed"
        )
    proof = client.consistency_proof(first, second) if first not in (0, second) else []
    try:
        verify_consistency(first, second, recorded.root, current.root, proof)
    except InvalidProof as invalid:
        raise _Failed(
            f"its log of {second} entries does not extend the recorded head of {first} "
            f"(history was rewritten): {invalid.reason}"
        ) from None


def _train_calls(leaves: list[bytes], recorded: SignedTreeHead, job_id: str, agreements: set[str]) -> int:
    size = recorded.tree_size
    if len(leaves) != size:
        raise _Failed(f"it returned {len(leaves)} entries for the first {size}")
    if MerkleTree(leaf_hash(leaf) for leaf in leaves).root() != recorded.root:
        raise _Failed(f"its first {size} entries do not hash to the recorded root {recorded.root_hash[:16]}…")
    count = 0
    for position, leaf in enumerate(leaves):
        try:
            index, entry = decode_leaf(leaf)
        except ValueError as error:
            raise _Failed(f"entry {position} is not an audit entry: {error}") from None
        if index != position:
            raise _Failed(f"entry {position} names the index {index}")
        if (
            entry.method == TRAIN_METHOD
            and entry.decision == "allow"
            and entry.target == job_id
            and entry.agreement_id in agreements
        ):
            count += 1
    if not count:
        raise _Failed(f"none of its first {size} entries is an allowed Train call of job {job_id!r}")
    return count

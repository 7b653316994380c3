"""A regulator's export of a node's audit log over the Audit RPCs, into a bundle that verifies offline.

The node signs a fresh tree head; the regulator fetches every entry that head covers and writes the bundle
itself. Nothing the node sends is trusted here: ``audit.verify_bundle`` decides, with only the CA certificate.
Heads the regulator kept from earlier exports go into the bundle too, with the node's consistency proofs to
the fresh head, so a node that rewrote history since then fails verification.
"""

from __future__ import annotations

import base64
import itertools
import json
from datetime import UTC, datetime
from pathlib import Path

from audit import ConsistencyLink, SignedTreeHead, leaf_hash, timestamp_text
from audit.bundle import write_bundle
from contracts.client import NodeClient
from contracts.v1 import audit_pb2


def head_from_message(message: audit_pb2.SignedTreeHead) -> SignedTreeHead:
    """Rebuild a signed tree head from the wire; the verifier checks it, not this function."""
    payload = json.loads(message.head_json)
    return SignedTreeHead(
        node=payload["node"],
        tree_size=payload["tree_size"],
        root_hash=payload["root_hash"],
        timestamp=payload["timestamp"],
        signature=base64.b64encode(message.signature).decode(),
        certificate_pem=message.signing_certificate_pem.decode("ascii"),
    )


def export_node_log(
    client: NodeClient, out: Path, *, ca_cert_pem: bytes, kept_heads: list[SignedTreeHead] = ()
) -> SignedTreeHead:
    """Write a bundle of the node's whole log to ``out``; returns the fresh head it covers.

    Of ``kept_heads``, those of this node (the fresh head's node name) that are smaller go in, each linked to
    the next by the node's consistency proof.
    """
    fresh = head_from_message(client.tree_head(fresh=True))
    leaves = client.entries(0, fresh.tree_size)
    earlier = sorted(
        (h for h in kept_heads if h.node == fresh.node and 0 < h.tree_size < fresh.tree_size),
        key=lambda h: h.tree_size,
    )
    heads = [*earlier, fresh]
    links = [
        ConsistencyLink(a.tree_size, b.tree_size, client.consistency_proof(a.tree_size, b.tree_size))
        for a, b in itertools.pairwise(heads)
    ]
    signing_cert_pem = fresh.certificate_pem.encode("ascii")
    write_bundle(
        out,
        node=fresh.node,
        rows=((leaf, leaf_hash(leaf)) for leaf in leaves),
        heads=heads,
        links=links,
        signing_cert_pem=signing_cert_pem,
        ca_cert_pem=ca_cert_pem,
        exported_at=timestamp_text(datetime.now(UTC)),
    )
    return fresh


def save_heads(path: Path, heads: list[SignedTreeHead]) -> None:
    path.write_text(json.dumps([head.to_dict() for head in heads], indent=2) + "\n")


def load_heads(path: Path) -> list[SignedTreeHead]:
    if not path.exists():
        return []
    return [SignedTreeHead.from_dict(item) for item in json.loads(path.read_text())]

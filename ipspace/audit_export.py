"""A regulator's export of a signed audit log, a node's or the coordinator's own, into a bundle that
verifies offline.

The log's keeper signs a fresh tree head; the regulator fetches every entry that head covers and writes the
bundle itself. Nothing the keeper sends is trusted here: ``audit.verify_bundle`` decides, with only the CA
certificate. Heads the regulator kept from earlier exports go into the bundle too, with the keeper's
consistency proofs to the fresh head, so a keeper that rewrote history since then fails verification.

A node serves its log over the Audit RPCs (`NodeLogSource`), the coordinator over ``/audit/log/*``
(`CoordinatorLogSource`); `export_log` is the same for both.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from audit import ConsistencyLink, SignedTreeHead, leaf_hash, timestamp_text
from audit.bundle import write_bundle
from contracts.client import NodeClient
from contracts.v1 import audit_pb2
from ipspace.coordinator_client import CoordinatorClient


class LogSource(Protocol):
    """Where a log is read from. Every answer is unverified."""

    def fresh_head(self) -> SignedTreeHead:
        """A head signed now over every entry."""
        ...

    def entries(self, start: int, end: int) -> list[bytes]:
        """The leaves of entries start..end-1, as the bytes that were hashed."""
        ...

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """The RFC 9162 consistency proof between the trees of `first` and `second` entries."""
        ...


def head_from_message(message: audit_pb2.SignedTreeHead) -> SignedTreeHead:
    """Rebuild a signed tree head from the Audit RPC's message; the verifier checks it, not this function.
    Raises audit.InvalidTreeHead if the message does not hold a tree head's signed form."""
    return SignedTreeHead.from_wire(message.head_json, message.signature, message.signing_certificate_pem)


class NodeLogSource:
    """A node's log, over its Audit RPCs."""

    def __init__(self, client: NodeClient) -> None:
        self._client = client

    def fresh_head(self) -> SignedTreeHead:
        return head_from_message(self._client.tree_head(fresh=True))

    def entries(self, start: int, end: int) -> list[bytes]:
        return self._client.entries(start, end)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        return self._client.consistency_proof(first, second)


class CoordinatorLogSource:
    """The coordinator's own log, over its regulator-only ``/audit/log/*`` routes."""

    def __init__(self, client: CoordinatorClient) -> None:
        self._client = client

    def fresh_head(self) -> SignedTreeHead:
        return self._client.audit_tree_head(fresh=True)

    def entries(self, start: int, end: int) -> list[bytes]:
        return self._client.audit_entries(start, end)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        return self._client.audit_consistency_proof(first, second)


def export_log(
    source: LogSource, out: Path, *, ca_cert_pem: bytes, kept_heads: list[SignedTreeHead] = ()
) -> SignedTreeHead:
    """Write a bundle of the whole log to ``out`` (FileExistsError if it exists); returns the fresh head.

    Of ``kept_heads``, those of this log (the fresh head's node name) that are smaller go in, each linked to
    the next by the keeper's consistency proof.
    """
    fresh = source.fresh_head()
    leaves = source.entries(0, fresh.tree_size)
    earlier = sorted(
        (h for h in kept_heads if h.node == fresh.node and 0 < h.tree_size < fresh.tree_size),
        key=lambda h: h.tree_size,
    )
    heads = [*earlier, fresh]
    links = [
        ConsistencyLink(a.tree_size, b.tree_size, source.consistency_proof(a.tree_size, b.tree_size))
        for a, b in itertools.pairwise(heads)
    ]
    write_bundle(
        out,
        node=fresh.node,
        rows=((leaf, leaf_hash(leaf)) for leaf in leaves),
        heads=heads,
        links=links,
        signing_cert_pem=fresh.certificate_pem.encode("ascii"),
        ca_cert_pem=ca_cert_pem,
        exported_at=timestamp_text(datetime.now(UTC)),
    )
    return fresh


def export_node_log(
    client: NodeClient, out: Path, *, ca_cert_pem: bytes, kept_heads: list[SignedTreeHead] = ()
) -> SignedTreeHead:
    """`export_log` of a node's log over its Audit RPCs."""
    return export_log(NodeLogSource(client), out, ca_cert_pem=ca_cert_pem, kept_heads=kept_heads)


def export_coordinator_log(
    client: CoordinatorClient, out: Path, *, ca_cert_pem: bytes, kept_heads: list[SignedTreeHead] = ()
) -> SignedTreeHead:
    """`export_log` of the coordinator's own log (the client's identity must be a regulator's)."""
    return export_log(CoordinatorLogSource(client), out, ca_cert_pem=ca_cert_pem, kept_heads=kept_heads)


def save_heads(path: Path, heads: list[SignedTreeHead]) -> None:
    path.write_text(json.dumps([head.to_dict() for head in heads], indent=2) + "\n")


def load_heads(path: Path) -> list[SignedTreeHead]:
    if not path.exists():
        return []
    return [SignedTreeHead.from_dict(item) for item in json.loads(path.read_text())]

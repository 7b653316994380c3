"""A regulator's export of the whole data space into one bundle (see `audit.space_bundle` for its layout).

The coordinator's own log comes over its regulator-only routes; each node's log straight from the node over
its Audit RPCs (never through the coordinator), with the heads the coordinator kept of that node linked in by
the node's own consistency proofs; the kept heads and alerts themselves go in as the coordinator gave them.
Nothing here is trusted: ``audit.space_bundle.verify_space`` decides, with the CA certificate alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from audit import InvalidTreeHead, SignedTreeHead, timestamp_text
from audit.space_bundle import COORDINATOR_DIR, NODES_DIR, write_space_manifest
from contracts.client import NodeClient, NodeRefused
from crypto import Identity
from ipspace.audit_export import export_coordinator_log, export_node_log
from ipspace.coordinator_client import CoordinatorClient


@dataclass(frozen=True)
class SpaceExport:
    coordinator_entries: int
    node_entries: dict[str, int]
    not_exported: dict[str, str]
    alerts: int


def export_space(
    out: Path,
    *,
    coordinator: CoordinatorClient,
    nodes: dict[str, str],
    identity: Identity,
    token: str,
    timeout_s: float = 30.0,
) -> SpaceExport:
    """Write a data-space bundle to ``out`` (FileExistsError if it exists); ``nodes`` maps name -> host:port.

    A node the coordinator keeps heads of but ``nodes`` gives no address for is listed as not exported.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=False)
    (out / NODES_DIR).mkdir()
    ca_cert_pem = identity.ca_cert_pem
    own = export_coordinator_log(coordinator, out / COORDINATOR_DIR, ca_cert_pem=ca_cert_pem)
    kept = {item["node"]: coordinator.kept_heads(item["node"]) for item in coordinator.head_summary()}
    alerts = coordinator.alerts()
    exported: dict[str, int] = {}
    errors: dict[str, str] = {node: "no address was given for it" for node in kept if node not in nodes}
    for name, address in sorted(nodes.items()):
        heads = _heads(kept.get(name, []))
        try:
            with NodeClient(address, identity, token, timeout_s=timeout_s) as client:
                head = export_node_log(
                    client, out / NODES_DIR / name, ca_cert_pem=ca_cert_pem, kept_heads=heads
                )
        except NodeRefused as refused:
            errors[name] = f"{refused.status.name}: {refused.reason}"
            continue
        exported[name] = head.tree_size
    write_space_manifest(
        out,
        coordinator=own.node,
        nodes={**dict.fromkeys(exported), **errors},
        gossip={
            "heads": {node: [item["head"] for item in items] for node, items in kept.items()},
            "alerts": alerts,
        },
        exported_at=timestamp_text(datetime.now(UTC)),
    )
    return SpaceExport(own.tree_size, exported, errors, len(alerts))


def _heads(items: list[dict]) -> list[SignedTreeHead]:
    """Kept heads to link into a node's bundle; a malformed one is left out (the verifier sees it anyway)."""
    heads = []
    for item in items:
        try:
            heads.append(SignedTreeHead.from_dict(item.get("head")))
        except InvalidTreeHead:
            continue
    return heads

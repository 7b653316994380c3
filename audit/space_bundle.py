"""A data-space bundle: every node's audit log, the coordinator's own log and the tree heads the coordinator
kept of each node, in one directory that a regulator verifies offline with the CA certificate alone.

Layout:

    manifest.json       {"format": "ipspace-space-bundle", "version": 1, exported_at, coordinator, nodes:
                        {name: {"exported": bool, "error": str | null}}}
    coordinator/        the coordinator's own log, an `audit.bundle` directory
    nodes/<name>/       each node's log, an `audit.bundle` directory
    gossip.json         {"heads": {node: [signed head, ...]}, "alerts": [...]} as the coordinator kept them

`verify_space` checks each log with `audit.verify.verify_bundle`, giving a node's bundle the heads the
coordinator kept of it as known heads (so a node that rewrote or rolled back its log since fails), and
re-judges every alert: an equivocation or a rollback proves itself (two heads the node signed); a fork is
decided by the node's own log, which must extend both heads. A node fails when its log fails, when it was not
exported, or when an alert against it holds; the coordinator fails when its log fails or an alert it raised
does not hold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audit.errors import BundleInvalid, InvalidTreeHead
from audit.gossip import judge_head
from audit.heads import SignedTreeHead, verify_tree_head
from audit.verify import Summary, verify_bundle

SPACE_FORMAT = "ipspace-space-bundle"
SPACE_VERSION = 1
MANIFEST = "manifest.json"
COORDINATOR_DIR = "coordinator"
NODES_DIR = "nodes"
GOSSIP = "gossip.json"


@dataclass(frozen=True)
class PartVerdict:
    """One log of the data space: what its bundle proves, or the first entry it does not and why."""

    name: str
    kind: str  # "node" | "coordinator"
    summary: Summary | None = None
    first_bad_index: int | None = None
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.summary is not None and not self.problems


@dataclass(frozen=True)
class SpaceVerdict:
    parts: list[PartVerdict] = field(default_factory=list)
    alerts_upheld: int = 0

    @property
    def ok(self) -> bool:
        return all(part.ok for part in self.parts)

    @property
    def failing(self) -> list[str]:
        return [part.name for part in self.parts if not part.ok]


def is_space_bundle(path: Path) -> bool:
    """Whether ``path`` is a data-space bundle (rather than one log's bundle)."""
    try:
        manifest = json.loads((Path(path) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == SPACE_FORMAT


def write_space_manifest(
    path: Path,
    *,
    coordinator: str | None,
    nodes: dict[str, str | None],
    gossip: dict[str, Any],
    exported_at: str,
) -> None:
    """Write the manifest (last, so a bundle without one is known to be incomplete) and the gossip file.

    ``nodes`` maps each node to None when its bundle was exported, else to why it was not.
    """
    (Path(path) / GOSSIP).write_text(json.dumps(gossip, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    manifest = {
        "format": SPACE_FORMAT,
        "version": SPACE_VERSION,
        "exported_at": exported_at,
        "coordinator": coordinator,
        "nodes": {name: {"exported": error is None, "error": error} for name, error in sorted(nodes.items())},
    }
    (Path(path) / MANIFEST).write_text(
        json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )


def verify_space(path: Path, ca_cert_pem: bytes) -> SpaceVerdict:
    """Verify a data-space bundle; raises BundleInvalid(None, reason) if it can not be read at all."""
    path = Path(path)
    manifest = _read_json(path / MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != SPACE_FORMAT:
        raise BundleInvalid(None, f"{path} is not an {SPACE_FORMAT}")
    if manifest.get("version") != SPACE_VERSION:
        raise BundleInvalid(None, f"space bundle version {manifest.get('version')!r} is not supported")
    gossip = _read_json(path / GOSSIP)
    nodes = manifest.get("nodes")
    if not isinstance(nodes, dict) or not isinstance(gossip, dict):
        raise BundleInvalid(None, f"{MANIFEST} or {GOSSIP} is malformed")
    kept = _kept_heads(gossip.get("heads"), ca_cert_pem)
    alerts = _sort_alerts(gossip.get("alerts"), ca_cert_pem)
    parts, upheld, unfounded = [], len(alerts.proven), list(alerts.malformed)
    for name in sorted(nodes):
        problems = [f"{label} holds: {reason}" for label, node, reason in alerts.proven if node == name]
        claims = [claim for claim in alerts.fork_claims if claim.head.node == name]
        entry = nodes[name] if isinstance(nodes[name], dict) else {}
        if not entry.get("exported"):
            parts.append(
                PartVerdict(name, "node", problems=(f"not exported: {entry.get('error')}", *problems))
            )
            unfounded.extend(
                f"{claim.label} can not be checked: {name}'s log was not exported" for claim in claims
            )
            continue
        # A fork claim is decided by the node's own log: both heads must be prefixes of it, or the node fails.
        known = kept.get(name, []) + [head for claim in claims for head in (claim.head, claim.conflicting)]
        part = _verify_part(
            path / NODES_DIR / name, name, "node", ca_cert_pem, known=known, problems=problems
        )
        if part.summary is None:
            upheld += len(claims)
        else:
            unfounded.extend(
                f"{claim.label} does not hold: both heads are prefixes of {name}'s log" for claim in claims
            )
        parts.append(part)
    coordinator = manifest.get("coordinator")
    if isinstance(coordinator, str):
        parts.append(
            _verify_part(
                path / COORDINATOR_DIR, coordinator, "coordinator", ca_cert_pem, known=[], problems=unfounded
            )
        )
    else:
        parts.append(
            PartVerdict("coordinator", "coordinator", problems=("its log was not exported", *unfounded))
        )
    return SpaceVerdict(parts, upheld)


def _verify_part(
    directory: Path,
    name: str,
    kind: str,
    ca_cert_pem: bytes,
    *,
    known: list[SignedTreeHead],
    problems: list[str],
) -> PartVerdict:
    try:
        summary = verify_bundle(directory, ca_cert_pem, known_heads=known)
    except BundleInvalid as invalid:
        return PartVerdict(
            name, kind, first_bad_index=invalid.first_bad_index, problems=(invalid.reason, *problems)
        )
    if summary.node != name:
        problems = [f"the bundle in {directory.name} is the log of {summary.node!r}", *problems]
    return PartVerdict(name, kind, summary=summary, problems=tuple(problems))


def _kept_heads(heads: Any, ca_cert_pem: bytes) -> dict[str, list[SignedTreeHead]]:
    """The coordinator's kept heads of each node that verify as that node's (others prove nothing)."""
    kept: dict[str, list[SignedTreeHead]] = {}
    for node, items in (heads or {}).items() if isinstance(heads, dict) else ():
        for item in items if isinstance(items, list) else ():
            head = _verified_head(item, ca_cert_pem)
            if head is not None and head.node == node:
                kept.setdefault(node, []).append(head)
    return kept


@dataclass(frozen=True)
class _ForkClaim:
    label: str
    head: SignedTreeHead
    conflicting: SignedTreeHead


@dataclass
class _Alerts:
    proven: list[tuple[str, str, str]] = field(default_factory=list)  # (label, node, reason)
    fork_claims: list[_ForkClaim] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)


def _sort_alerts(alerts: Any, ca_cert_pem: bytes) -> _Alerts:
    """Equivocations and rollbacks prove themselves (two heads the node signed); forks need the node's log."""
    sorted_alerts = _Alerts()
    for alert in alerts if isinstance(alerts, list) else ():
        label = f"alert #{alert.get('alert_id')}" if isinstance(alert, dict) else "an alert"
        head = _verified_head(alert.get("head"), ca_cert_pem) if isinstance(alert, dict) else None
        conflicting = (
            _verified_head(alert.get("conflicting"), ca_cert_pem) if isinstance(alert, dict) else None
        )
        if head is None or conflicting is None or head.node != conflicting.node:
            sorted_alerts.malformed.append(f"{label} does not carry two heads signed by one node")
            continue
        judgement = judge_head([conflicting], head)
        if judgement.verdict.is_alarm:
            sorted_alerts.proven.append((label, head.node, judgement.reason))
        else:
            sorted_alerts.fork_claims.append(_ForkClaim(label, head, conflicting))
    return sorted_alerts


def _verified_head(item: Any, ca_cert_pem: bytes) -> SignedTreeHead | None:
    try:
        head = SignedTreeHead.from_dict(item)
        verify_tree_head(head, ca_cert_pem)
    except InvalidTreeHead:
        return None
    return head


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleInvalid(None, f"cannot read {path.name}: {error}") from None

"""The coordinator's keeping of every node's signed tree heads, and the alerts a contradicting head raises.

Nodes push their heads (``POST /audit/heads``), the coordinator pulls fresh ones on demand (``collect``), and
regulators report heads they fetched from nodes themselves (``POST /audit/heads/observed``). Every head
goes through ``receive``: its signature is checked against the CA, then ``audit.gossip.judge_head`` judges it
against the node's kept heads in one write transaction (two pushes can not both judge against a stale
history). A consistent head is kept; a contradicting one raises an alert holding both signed heads, which
anyone can check without trusting the coordinator. Both tables are append-only (triggers refuse UPDATE and
DELETE).

The coordinator is honest-but-curious here too: it can withhold heads, not forge them. That is why a regulator
also pulls heads straight from the nodes and compares (``ipspace audit heads --compare``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from audit import InvalidTreeHead, SignedTreeHead, verify_tree_head
from audit.gossip import ConsistencyEvidence, Judgement, Verdict, judge_head
from contracts.fields import utc_text
from coordinator.database import create_schema, reading, transaction
from crypto import Principal, Role

SCHEMA = """
CREATE TABLE IF NOT EXISTS node_heads (
    node TEXT NOT NULL,
    tree_size INTEGER NOT NULL,
    head_json TEXT NOT NULL,
    source TEXT NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (node, tree_size)
);
CREATE TABLE IF NOT EXISTS head_alerts (
    alert_id INTEGER PRIMARY KEY AUTOINCREMENT,
    node TEXT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    head_json TEXT NOT NULL,
    conflicting_json TEXT NOT NULL,
    proof_json TEXT,
    source TEXT NOT NULL,
    raised_at TEXT NOT NULL,
    UNIQUE (node, kind, head_json, conflicting_json)
);
CREATE TRIGGER IF NOT EXISTS node_heads_append_only_u BEFORE UPDATE ON node_heads
    BEGIN SELECT RAISE(ABORT, 'node_heads is append-only'); END;
CREATE TRIGGER IF NOT EXISTS node_heads_append_only_d BEFORE DELETE ON node_heads
    BEGIN SELECT RAISE(ABORT, 'node_heads is append-only'); END;
CREATE TRIGGER IF NOT EXISTS head_alerts_append_only_u BEFORE UPDATE ON head_alerts
    BEGIN SELECT RAISE(ABORT, 'head_alerts is append-only'); END;
CREATE TRIGGER IF NOT EXISTS head_alerts_append_only_d BEFORE DELETE ON head_alerts
    BEGIN SELECT RAISE(ABORT, 'head_alerts is append-only'); END;
"""


class HeadRefused(Exception):
    """A head that can not be judged at all: its signature, signer or sender is wrong. `reason` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotTheSigner(HeadRefused):
    """A node pushed a head signed by another member: a node pushes only its own."""


@dataclass(frozen=True)
class KeptHead:
    head: SignedTreeHead
    source: str
    received_at: str


@dataclass(frozen=True)
class HeadAlert:
    """A node's head contradicted one kept before: both heads are signed by the node, so the alert proves
    itself (for a fork, ask the node for the consistency proof it cannot give)."""

    alert_id: int
    node: str
    kind: str
    reason: str
    head: SignedTreeHead
    conflicting: SignedTreeHead
    proof: list[str] | None
    source: str
    raised_at: str


@dataclass(frozen=True)
class Receipt:
    """What became of a received head: the judgement, and the alert it raised, if any."""

    node: str
    tree_size: int
    judgement: Judgement
    alert_id: int | None = None
    head: SignedTreeHead | None = None


class HeadGossip:
    """Every node's kept heads and alerts, in the coordinator's SQLite file. Safe across threads."""

    def __init__(
        self, path: Path, ca_cert_pem: bytes, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.path = Path(path)
        self._ca_cert_pem = ca_cert_pem
        self._clock = clock or (lambda: datetime.now(UTC))
        create_schema(self.path, SCHEMA)

    def receive(
        self,
        head: SignedTreeHead,
        evidence: ConsistencyEvidence | None,
        *,
        source: str,
        sender: Principal | None = None,
    ) -> Receipt:
        """Judge ``head`` against the node's kept heads; keep it if consistent, alert if it contradicts them.

        ``sender``, when given, must be the node itself (a node pushes only its own heads): NotTheSigner
        otherwise. Raises HeadRefused when the head does not verify against the CA or is not a provider's.
        """
        signer = self._verified_signer(head)
        if sender is not None and (sender.name, sender.org) != (signer.name, signer.org):
            raise NotTheSigner(
                f"{sender.org}/{sender.name} may push only its own tree heads, not those of "
                f"{signer.org}/{signer.name}"
            )
        now = utc_text(self._clock())
        with transaction(self.path) as connection:
            kept = [kept.head for kept in _kept_heads(connection, head.node)]
            judgement = judge_head(kept, head, evidence)
            alert_id = None
            if judgement.verdict is Verdict.CONSISTENT:
                connection.execute(
                    "INSERT INTO node_heads (node, tree_size, head_json, source, received_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (head.node, head.tree_size, _head_json(head), source, now),
                )
            elif judgement.verdict.is_alarm:
                alert_id = _raise_alert(connection, head, judgement, evidence, source=source, now=now)
        return Receipt(head.node, head.tree_size, judgement, alert_id, head)

    def kept(self, node: str) -> list[KeptHead]:
        """The node's kept heads, by increasing size."""
        with reading(self.path) as connection:
            return _kept_heads(connection, node)

    def nodes(self) -> list[str]:
        """Every node that has a kept head or an alert, by name."""
        with reading(self.path) as connection:
            rows = connection.execute(
                "SELECT node FROM node_heads UNION SELECT node FROM head_alerts ORDER BY node"
            ).fetchall()
        return [row["node"] for row in rows]

    def alerts(self, node: str | None = None) -> list[HeadAlert]:
        """Every alert raised (of ``node`` only, when given), oldest first."""
        with reading(self.path) as connection:
            rows = connection.execute(
                "SELECT * FROM head_alerts WHERE ?1 IS NULL OR node = ?1 ORDER BY alert_id", (node,)
            ).fetchall()
        return [_alert(row) for row in rows]

    def _verified_signer(self, head: SignedTreeHead) -> Principal:
        try:
            signer = verify_tree_head(head, self._ca_cert_pem)
        except InvalidTreeHead as invalid:
            raise HeadRefused(f"the tree head does not verify: {invalid.reason}") from None
        if signer.role != Role.PROVIDER:
            raise HeadRefused(
                f"tree heads are kept for provider nodes; this one is signed by a {signer.role.value!r}"
            )
        return signer


def _kept_heads(connection: sqlite3.Connection, node: str) -> list[KeptHead]:
    rows = connection.execute(
        "SELECT head_json, source, received_at FROM node_heads WHERE node = ? ORDER BY tree_size", (node,)
    ).fetchall()
    return [KeptHead(_head(row["head_json"]), row["source"], row["received_at"]) for row in rows]


def _raise_alert(
    connection: sqlite3.Connection,
    head: SignedTreeHead,
    judgement: Judgement,
    evidence: ConsistencyEvidence | None,
    *,
    source: str,
    now: str,
) -> int:
    """Store the alert unless the same contradiction was alerted before; return its id either way."""
    assert judgement.conflicting is not None  # every alarm names the kept head it contradicts
    head_json, conflicting_json = _head_json(head), _head_json(judgement.conflicting)
    proof = json.dumps([value.hex() for value in evidence.proof]) if evidence is not None else None
    connection.execute(
        "INSERT OR IGNORE INTO head_alerts (node, kind, reason, head_json, conflicting_json, proof_json, "
        "source, raised_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            head.node,
            judgement.verdict.value,
            judgement.reason,
            head_json,
            conflicting_json,
            proof,
            source,
            now,
        ),
    )
    row = connection.execute(
        "SELECT alert_id FROM head_alerts "
        "WHERE node = ? AND kind = ? AND head_json = ? AND conflicting_json = ?",
        (head.node, judgement.verdict.value, head_json, conflicting_json),
    ).fetchone()
    return int(row["alert_id"])


def _head_json(head: SignedTreeHead) -> str:
    return json.dumps(head.to_dict(), sort_keys=True)


def _head(text: str) -> SignedTreeHead:
    return SignedTreeHead.from_dict(json.loads(text))


def _alert(row: sqlite3.Row) -> HeadAlert:
    return HeadAlert(
        alert_id=row["alert_id"],
        node=row["node"],
        kind=row["kind"],
        reason=row["reason"],
        head=_head(row["head_json"]),
        conflicting=_head(row["conflicting_json"]),
        proof=json.loads(row["proof_json"]) if row["proof_json"] is not None else None,
        source=row["source"],
        raised_at=row["raised_at"],
    )

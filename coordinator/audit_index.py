"""The coordinator's verified index of every audit log in the data space, for the regulator's queries and
dashboard.

A sync pulls each node's fresh signed head (through the gossip, so it is judged against the kept heads), then
the entries it has not indexed yet, and indexes them only if they hash, together with the entries indexed
before, to the root the node signed. A node whose entries do not is marked failed with the first entry that
does not match (found with the node's inclusion proofs, which come from the hashes it signed), and nothing of
that batch is indexed. The coordinator's own log is indexed the same way from its own file.

The index is a convenience for reading, not an authority: a regulator who trusts nobody exports a data-space
bundle and verifies it offline (``ipspace audit export-space`` / ``ipspace audit verify``). Entries hold
digests and metadata of calls, never rows or query contents; the coordinator reads them under the nodes'
audit policy (the coordinator role may read node logs for this index).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from audit import AuditEntry, AuditLog, SignedTreeHead
from audit.gossip import Verdict
from contracts.client import NodeRefused
from contracts.fields import utc_text
from coordinator.database import create_schema, reading, transaction
from coordinator.head_collect import collect_head
from coordinator.head_gossip import HeadGossip, Receipt
from coordinator.log_check import CheckedBatch, check_batch, fetch_checked
from coordinator.settings import CoordinatorSettings, NodeEndpoint, SettingsError
from crypto import Identity

SCHEMA = """
CREATE TABLE IF NOT EXISTS indexed_entries (
    log TEXT NOT NULL,
    idx INTEGER NOT NULL,
    leaf_hash BLOB NOT NULL,
    time TEXT NOT NULL,
    actor TEXT NOT NULL,
    org TEXT NOT NULL,
    role TEXT NOT NULL,
    method TEXT NOT NULL,
    decision TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    dataset TEXT,
    agreement_id TEXT,
    purpose TEXT,
    target TEXT,
    charges_json TEXT NOT NULL,
    PRIMARY KEY (log, idx)
);
CREATE INDEX IF NOT EXISTS indexed_by_time ON indexed_entries (time);
CREATE INDEX IF NOT EXISTS indexed_by_agreement ON indexed_entries (agreement_id);
CREATE INDEX IF NOT EXISTS indexed_by_org ON indexed_entries (org);
CREATE INDEX IF NOT EXISTS indexed_by_dataset ON indexed_entries (dataset);
CREATE TABLE IF NOT EXISTS log_status (
    log TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    verified_size INTEGER NOT NULL,
    head_json TEXT,
    first_bad_index INTEGER,
    reason TEXT NOT NULL,
    checked_at TEXT NOT NULL
);
"""
ENTRY_COLUMNS = (
    "time",
    "actor",
    "org",
    "role",
    "method",
    "decision",
    "status",
    "reason",
    "dataset",
    "agreement_id",
    "purpose",
    "target",
)
FILTERS = ("log", "dataset", "org", "agreement_id", "purpose", "decision", "method")
_OPTIONAL_COLUMNS = frozenset({"dataset", "agreement_id", "purpose", "target"})
# Column names are the constants above; every value is bound.
_INSERT_ENTRY = (
    "INSERT OR IGNORE INTO indexed_entries (log, idx, leaf_hash, charges_json, "  # noqa: S608
    f"{', '.join(ENTRY_COLUMNS)}) VALUES (?, ?, ?, ?, {', '.join('?' for _ in ENTRY_COLUMNS)})"
)


@dataclass(frozen=True)
class LogStatus:
    """How far one log is verified and indexed, and what went wrong at the last check."""

    log: str
    kind: str  # "node" | "coordinator"
    state: str  # "verified" | "failed" | "unreachable"
    verified_size: int
    head: SignedTreeHead | None
    first_bad_index: int | None
    reason: str
    checked_at: str


@dataclass(frozen=True)
class IndexedEntry:
    log: str
    index: int
    time: str
    actor: str
    org: str
    role: str
    method: str
    decision: str
    status: str
    reason: str
    dataset: str | None
    agreement_id: str | None
    purpose: str | None
    target: str | None
    charges: dict[str, int]


@dataclass(frozen=True)
class EntryQuery:
    """Filters of an entry search; each given one must match exactly, times are inclusive RFC 3339 bounds."""

    log: str | None = None
    dataset: str | None = None
    org: str | None = None
    agreement_id: str | None = None
    purpose: str | None = None
    decision: str | None = None
    method: str | None = None
    since: str | None = None
    until: str | None = None

    def where(self) -> tuple[str, list[object]]:
        clauses, values = [], []
        for name in FILTERS:
            value = getattr(self, name)
            if value is not None:
                clauses.append(f"{name} = ?")
                values.append(value)
        if self.since is not None:
            clauses.append("time >= ?")
            values.append(self.since)
        if self.until is not None:
            clauses.append("time <= ?")
            values.append(self.until)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", values


class AuditIndex:
    """The index over the coordinator's SQLite file; ``sync_*`` write, the rest read. Safe across threads."""

    def __init__(self, path: Path, *, clock: Callable[[], datetime] | None = None) -> None:
        self.path = Path(path)
        self._clock = clock or (lambda: datetime.now(UTC))
        self._sync_lock = threading.Lock()
        create_schema(self.path, SCHEMA)

    # --- syncing -------------------------------------------------------------------------------------------

    def sync_all(
        self,
        settings: CoordinatorSettings,
        identity: Identity,
        gossip: HeadGossip,
        own_log: AuditLog | None,
        *,
        full: bool = False,
    ) -> list[LogStatus]:
        """Index new entries of every configured node and the coordinator's own log; return every status.

        With ``full`` every entry is fetched again and must be the one indexed before (a node that edited an
        old entry in its database fails at it); otherwise only new entries are fetched and checked.
        """
        with self._sync_lock:
            try:
                token = settings.read_token()
            except SettingsError as error:
                token = None
                reason = str(error)
            for node in settings.nodes:
                if token is None:
                    self._set_status(node.name, "node", "unreachable", reason=reason)
                    continue
                self._sync_node(node, identity, token, gossip, timeout_s=settings.node_timeout_s, full=full)
            if own_log is not None:
                self._sync_own(own_log)
        return self.statuses()

    def _sync_node(
        self,
        node: NodeEndpoint,
        identity: Identity,
        token: str,
        gossip: HeadGossip,
        *,
        timeout_s: float,
        full: bool,
    ) -> None:
        receipt = collect_head(gossip, node, identity, token, timeout_s)
        if isinstance(receipt, str):
            self._set_status(node.name, "node", "unreachable", reason=receipt)
            return
        if not isinstance(receipt, Receipt) or receipt.head is None:
            return
        head = receipt.head
        if receipt.judgement.verdict.is_alarm or receipt.judgement.verdict is Verdict.NEEDS_PROOF:
            reason = f"its head of size {head.tree_size} was not accepted: {receipt.judgement.reason}"
            self._set_status(node.name, "node", "failed", head=head, reason=reason)
            return
        indexed = self._indexed_hashes(node.name)
        try:
            with node.client(identity, token, timeout_s=timeout_s) as client:
                batch = fetch_checked(client, indexed, head, full=full)
        except NodeRefused as refused:
            self._set_status(
                node.name, "node", "unreachable", reason=f"{refused.status.name}: {refused.reason}"
            )
            return
        self._store(node.name, "node", head, batch)

    def _sync_own(self, own_log: AuditLog) -> None:
        head = own_log.sign_head()
        name = head.node
        indexed = self._indexed_hashes(name)
        leaves = own_log.entries(len(indexed), head.tree_size)
        self._store(name, "coordinator", head, check_batch(indexed, leaves, head))

    def _store(self, log: str, kind: str, head: SignedTreeHead, batch: CheckedBatch) -> None:
        if batch.first_bad_index is not None:
            self._set_status(
                log, kind, "failed", head=head, first_bad_index=batch.first_bad_index, reason=batch.reason
            )
            return
        with transaction(self.path) as connection:
            connection.executemany(_INSERT_ENTRY, [_row(log, *item) for item in batch.entries])
        self._set_status(log, kind, "verified", head=head, reason=f"{head.tree_size} entries verified")

    def _indexed_hashes(self, log: str) -> list[bytes]:
        with reading(self.path) as connection:
            rows = connection.execute(
                "SELECT leaf_hash FROM indexed_entries WHERE log = ? ORDER BY idx", (log,)
            ).fetchall()
        return [bytes(row["leaf_hash"]) for row in rows]

    def _set_status(
        self,
        log: str,
        kind: str,
        state: str,
        *,
        head: SignedTreeHead | None = None,
        first_bad_index: int | None = None,
        reason: str,
    ) -> None:
        """Record the check; an unreachable node keeps what was verified before (its size and head)."""
        now = utc_text(self._clock())
        with transaction(self.path) as connection:
            before = connection.execute("SELECT * FROM log_status WHERE log = ?", (log,)).fetchone()
            size = connection.execute(
                "SELECT COUNT(*) FROM indexed_entries WHERE log = ?", (log,)
            ).fetchone()[0]
            head_json = (
                json.dumps(head.to_dict()) if head is not None else (before["head_json"] if before else None)
            )
            connection.execute(
                "INSERT OR REPLACE INTO log_status (log, kind, state, verified_size, head_json, "
                "first_bad_index, reason, checked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (log, kind, state, size, head_json, first_bad_index, reason, now),
            )

    # --- reading -------------------------------------------------------------------------------------------

    def statuses(self) -> list[LogStatus]:
        with reading(self.path) as connection:
            rows = connection.execute("SELECT * FROM log_status ORDER BY kind DESC, log").fetchall()
        return [_status(row) for row in rows]

    def entries(self, query: EntryQuery, *, limit: int, offset: int) -> tuple[int, list[IndexedEntry]]:
        """(how many match, the page of them newest first)."""
        where, values = query.where()
        with reading(self.path) as connection:
            # `where` names only the constant columns of FILTERS; every value is bound.
            count = "SELECT COUNT(*) FROM indexed_entries" + where  # noqa: S608
            page = f"SELECT * FROM indexed_entries{where} ORDER BY time DESC, log, idx DESC LIMIT ? OFFSET ?"  # noqa: S608
            total = connection.execute(count, values).fetchone()[0]
            rows = connection.execute(page, [*values, limit, offset]).fetchall()
        return total, [_entry(row) for row in rows]

    def agreement_entries(self, agreement_ids: Sequence[str] | None = None) -> Iterator[IndexedEntry]:
        """Every indexed entry under an agreement (of ``agreement_ids`` only, when given), oldest first."""
        with reading(self.path) as connection:
            rows = connection.execute(
                "SELECT * FROM indexed_entries WHERE agreement_id IS NOT NULL ORDER BY time, log, idx"
            ).fetchall()
        wanted = set(agreement_ids) if agreement_ids is not None else None
        for row in rows:
            if wanted is None or row["agreement_id"] in wanted:
                yield _entry(row)


def normal_time(text: str) -> str | None:
    """An RFC 3339 time (Z or an offset) as the one UTC form the index stores; None if it is not one."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return utc_text(moment)


def _row(log: str, index: int, hashed: bytes, entry: AuditEntry) -> tuple:
    values = [getattr(entry, name) for name in ENTRY_COLUMNS]
    values[0] = normal_time(entry.time) or entry.time  # one format, so that times compare as text
    for position, name in enumerate(ENTRY_COLUMNS):
        if name in _OPTIONAL_COLUMNS and values[position] == "":
            values[position] = None  # a node writes "" for "none" (a call under no agreement)
    return (log, index, hashed, json.dumps(entry.charges, sort_keys=True), *values)


def _status(row: sqlite3.Row) -> LogStatus:
    head = SignedTreeHead.from_dict(json.loads(row["head_json"])) if row["head_json"] else None
    return LogStatus(
        log=row["log"],
        kind=row["kind"],
        state=row["state"],
        verified_size=row["verified_size"],
        head=head,
        first_bad_index=row["first_bad_index"],
        reason=row["reason"],
        checked_at=row["checked_at"],
    )


def _entry(row: sqlite3.Row) -> IndexedEntry:
    return IndexedEntry(
        log=row["log"],
        index=row["idx"],
        charges=json.loads(row["charges_json"]),
        **{name: row[name] for name in ENTRY_COLUMNS},
    )

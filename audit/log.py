"""A node's tamper-evident audit log: durable appends, a Merkle tree over them, signed tree heads, export.

The node's own tables (budgets, say) may live in the same SQLite file: pass their idempotent DDL as
`extra_schema`, change them only inside an `append(..., in_txn=...)` callback (so a charge commits atomically
with the entry that records it), and read them through `reading()`.
"""

from __future__ import annotations

import base64
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

from audit import store
from audit.bundle import ConsistencyLink, write_bundle
from audit.entry import AuditEntry, prepare_leaf, timestamp_text
from audit.errors import AuditCorrupted, AuditError, AuditWriteError
from audit.heads import SignedTreeHead, sign_tree_head
from audit.merkle import MerkleTree
from audit.writer import GroupCommitWriter, InTxn
from crypto import Identity

logger = logging.getLogger(__name__)


class AuditLog:
    """The append-only audit log of one node, in one SQLite file (WAL, synchronous=FULL).

    Thread-safe. Appends from many threads share fsyncs (group commit). A tree head is signed automatically
    once `head_every` entries or `head_interval_s` seconds have passed since the last one (if entries were
    added meanwhile), and on demand by `sign_head()`. `node_name` must be the signer's certificate name, which
    is what a verifier checks heads against.
    """

    def __init__(
        self,
        path: Path,
        signer: Identity,
        node_name: str,
        *,
        head_every: int = 1000,
        head_interval_s: float = 5.0,
        extra_schema: str = "",
        clock: Callable[[], datetime] | None = None,
        max_pending: int = 10_000,
        write_timeout_s: float = 30.0,
    ) -> None:
        if node_name != signer.name:
            raise ValueError(
                f"node name {node_name!r} differs from the signing certificate's {signer.name!r}"
            )
        if head_every < 1 or head_interval_s <= 0:
            raise ValueError("head_every must be >= 1 and head_interval_s > 0")
        self._path = Path(path)
        self._signer = signer
        self._node = node_name
        self._head_every = head_every
        self._head_interval_s = head_interval_s
        self._clock = clock or (lambda: datetime.now(UTC))
        self._timeout_s = write_timeout_s
        self._closed = False
        self._readers = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

        conn = store.connect(self._path)
        try:
            store.create_schema(conn, extra_schema)
            self._tree = MerkleTree(store.load_leaf_hashes(conn))
            rows = store.load_head_rows(conn)
            self._latest_head = _head_from_row(rows[-1]) if rows else None
            self._check_latest_head()
        except BaseException:
            conn.close()
            raise
        self._last_head_at = time.monotonic()
        self._writer = GroupCommitWriter(
            conn,
            self._tree.size,
            after_commit=self._tree.extend,
            maintenance=self._maybe_sign_head,
            maintenance_due=self._head_due,
            tick_s=max(0.05, min(head_interval_s / 2, 1.0)),
            max_pending=max_pending,
        )

    @property
    def node(self) -> str:
        return self._node

    @property
    def size(self) -> int:
        """Number of entries committed so far."""
        return self._tree.size

    def append(self, entry: AuditEntry, *, in_txn: InTxn | None = None) -> int:
        """Append `entry`; return its index once it is durably committed.

        `in_txn(conn)` runs inside the same transaction, on whichever appending thread leads the group
        commit (with the caller's contextvars), serialized with every other write, so a check-and-charge in
        it can not race. It must not commit or roll back. If it raises, the entry is not written and its
        exception propagates here; other entries of the same group commit are unaffected. Raises
        AuditWriteError when the entry could not be committed (disk full, database locked, log closed, not
        committed within the write timeout): the caller must then fail the request it was logging; and
        ValueError, before queueing, for a value outside JSON's domain (an integer beyond 2**53 - 1).
        """
        # Canonicalize before queueing: it overlaps the leader's fsync instead of lengthening it.
        leaf = prepare_leaf(entry)
        return self._writer.append(leaf, in_txn, timeout_s=self._timeout_s)

    def tree_head(self) -> SignedTreeHead:
        """The latest signed tree head (signing one first if the log has none yet)."""
        latest = self._latest_head
        return latest if latest is not None else self.sign_head()

    def sign_head(self) -> SignedTreeHead:
        """Return a signed head covering every append that returned before this call.

        Signs and stores a new head unless the latest one already covers the current size. Raises
        AuditWriteError if the head could not be stored.
        """
        return self._writer.call(self._sign_if_grown, timeout_s=self._timeout_s)

    def heads(self) -> list[SignedTreeHead]:
        """Every stored tree head, by increasing size."""
        with self.reading() as conn:
            return [_head_from_row(row) for row in store.load_head_rows(conn)]

    def entries(self, start: int, end: int) -> list[bytes]:
        """The canonical JSON leaves of entries start..end-1; ValueError unless 0 <= start <= end <= size."""
        if not 0 <= start <= end <= self.size:
            raise ValueError(f"entry range {start}..{end} is outside 0..{self.size}")
        with self.reading() as conn:
            return [leaf for _, leaf, _ in store.iter_entries(conn, start, end)]

    def root(self, tree_size: int | None = None) -> bytes:
        """The RFC 9162 root of the first `tree_size` entries (default: all)."""
        return self._tree.root(tree_size)

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of entry `index` in the tree of `tree_size` entries."""
        return self._tree.inclusion_proof(index, tree_size)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """RFC 9162 consistency proof between the trees of `first` and `second` entries."""
        return self._tree.consistency_proof(first, second)

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection to the log file (this thread's own), inside one snapshot transaction."""
        if self._closed:
            raise AuditError("the audit log is closed")
        conn = getattr(self._readers, "conn", None)
        if conn is None:
            conn = store.connect(self._path, read_only=True)
            self._readers.conn = conn
            with self._readers_lock:
                self._reader_conns.append(conn)
        if conn.in_transaction:  # nested use on one thread shares the outer snapshot
            yield conn
            return
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            store.rollback(conn)

    def export_bundle(self, path: Path) -> SignedTreeHead:
        """Sign a fresh head, then write a bundle (see `audit.bundle`) of every entry it covers; return it.

        Raises FileExistsError if `path` exists, AuditWriteError if the head could not be stored.
        """
        head = self.sign_head()
        with self.reading() as conn:
            heads = [_head_from_row(row) for row in store.load_head_rows(conn, head.tree_size)]
            links = [
                ConsistencyLink(
                    a.tree_size, b.tree_size, self._tree.consistency_proof(a.tree_size, b.tree_size)
                )
                for a, b in pairwise(heads)
            ]
            write_bundle(
                Path(path),
                node=self._node,
                rows=((leaf, digest) for _, leaf, digest in store.iter_entries(conn, 0, head.tree_size)),
                heads=heads,
                links=links,
                signing_cert_pem=self._signer.signing_cert_pem,
                ca_cert_pem=self._signer.ca_cert_pem,
                exported_at=timestamp_text(self._clock()),
            )
        return head

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, sign a head over every entry, stop the maintenance timer, close the file.

        The closing head leaves no unsigned tail behind a clean shutdown, so an entry rewritten on disk while
        the node is down (leaf and recorded hash alike) no longer matches a signed root at the next start.
        Idempotent. Raises AuditWriteError if a write held the log past `timeout_s`, so it could not close.
        """
        if self._closed:
            return
        try:
            self.sign_head()
        except AuditWriteError:
            logger.exception("no closing tree head could be signed; the tail stays unsigned until restart")
        self._closed = True
        stopped = self._writer.close(timeout_s)
        if not stopped:
            raise AuditWriteError(f"the audit writer did not stop within {timeout_s:g}s")
        with self._readers_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _check_latest_head(self) -> None:
        """Refuse to open a file whose entries contradict its own latest signed head."""
        head = self._latest_head
        if head is None:
            return
        if head.tree_size > self._tree.size:
            raise AuditCorrupted(
                f"the latest tree head covers {head.tree_size} entries, the file holds {self._tree.size}"
            )
        if self._tree.root(head.tree_size) != head.root:
            raise AuditCorrupted(f"the entries no longer hash to the root signed at size {head.tree_size}")

    def _head_due(self) -> bool:
        """Whether enough entries or enough time have gone by since the latest head (with entries added)."""
        latest = self._latest_head
        grown = self._tree.size - (latest.tree_size if latest is not None else 0)
        if grown <= 0:
            return False
        return grown >= self._head_every or time.monotonic() - self._last_head_at >= self._head_interval_s

    def _maybe_sign_head(self, conn: sqlite3.Connection) -> None:
        """Maintenance (under the writer's commit lock): sign a head when one is due."""
        if not self._head_due():
            return
        try:
            self._sign_and_store(conn)
        except AuditWriteError:
            self._last_head_at = time.monotonic()  # back off for one interval, then try again
            logger.exception("could not store an automatic tree head")

    def _sign_if_grown(self, conn: sqlite3.Connection) -> SignedTreeHead:
        latest = self._latest_head
        if latest is not None and latest.tree_size == self._tree.size:
            return latest
        return self._sign_and_store(conn)

    def _sign_and_store(self, conn: sqlite3.Connection) -> SignedTreeHead:
        size = self._tree.size
        stamp = timestamp_text(self._clock())
        latest = self._latest_head
        if latest is not None and stamp < latest.timestamp:
            stamp = latest.timestamp  # a clock stepping back must not make heads go back in time
        head = sign_tree_head(self._signer, self._node, size, self._tree.root(size), stamp)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                store.INSERT_HEAD,
                (size, head.root, head.timestamp, head.node, _signature_bytes(head), head.certificate_pem),
            )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            store.rollback(conn)
            raise AuditWriteError(f"the tree head at size {size} was not stored: {exc}") from exc
        self._latest_head = head
        self._last_head_at = time.monotonic()
        return head


def _signature_bytes(head: SignedTreeHead) -> bytes:
    return base64.b64decode(head.signature)


def _head_from_row(row: store.HeadRow) -> SignedTreeHead:
    size, root, stamp, node, signature, cert = row
    return SignedTreeHead(
        node=node,
        tree_size=size,
        root_hash=root.hex(),
        timestamp=stamp,
        signature=base64.b64encode(signature).decode("ascii"),
        certificate_pem=cert,
    )

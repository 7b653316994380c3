"""The SQLite file under an audit log: schema, triggers, connections, and the few queries the log runs.

The file runs in WAL mode with synchronous=FULL, so a committed transaction has reached the disk (one fsync
of the WAL). Triggers make both tables append-only for every connection, ours or not: UPDATE and DELETE are
refused, and an INSERT must carry exactly the next index (which also defeats INSERT OR REPLACE, a delete in
disguise). Triggers stop mistakes, not an attacker who can rewrite the file; that is what the Merkle tree and
the signed tree heads are for.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from audit.errors import AuditCorrupted
from audit.merkle import leaf_hash

logger = logging.getLogger(__name__)

APPEND_ONLY = "audit log is append-only"
BUSY_TIMEOUT_MS = 5000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    idx INTEGER PRIMARY KEY,
    leaf BLOB NOT NULL,
    leaf_hash BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS entries_refuse_update BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_refuse_delete BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_refuse_out_of_order BEFORE INSERT ON entries
WHEN NEW.idx IS NOT COALESCE((SELECT MAX(idx) FROM entries), -1) + 1
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: entries are inserted at the next index only'); END;

CREATE TABLE IF NOT EXISTS tree_heads (
    tree_size INTEGER PRIMARY KEY,
    root BLOB NOT NULL,
    timestamp TEXT NOT NULL,
    node TEXT NOT NULL,
    signature BLOB NOT NULL,
    certificate_pem TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS tree_heads_refuse_update BEFORE UPDATE ON tree_heads
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS tree_heads_refuse_delete BEFORE DELETE ON tree_heads
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS tree_heads_refuse_out_of_order BEFORE INSERT ON tree_heads
WHEN NEW.tree_size <= COALESCE((SELECT MAX(tree_size) FROM tree_heads), -1)
BEGIN SELECT RAISE(ABORT, 'audit log is append-only: tree heads are inserted in increasing size only'); END;
"""

INSERT_ENTRY = "INSERT INTO entries (idx, leaf, leaf_hash) VALUES (?, ?, ?)"
INSERT_HEAD = (
    "INSERT INTO tree_heads (tree_size, root, timestamp, node, signature, certificate_pem) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
HeadRow = tuple[int, bytes, str, str, bytes, str]
EntryRow = tuple[int, bytes, bytes]
_ROWS_PER_STATEMENT = 500  # 3 parameters a row, well under SQLite's 32766


def insert_entries(conn: sqlite3.Connection, rows: list[EntryRow]) -> None:
    """Insert rows (index, leaf, leaf hash) with as few statements as possible.

    One multi-row INSERT costs one call into SQLite: under the GIL, each call is a chance for another
    thread to hold up the writer, so fewer calls make group commit faster.
    """
    for start in range(0, len(rows), _ROWS_PER_STATEMENT):
        chunk = rows[start : start + _ROWS_PER_STATEMENT]
        placeholders = ", ".join(["(?, ?, ?)"] * len(chunk))
        params = [value for row in chunk for value in row]
        conn.execute(f"INSERT INTO entries (idx, leaf, leaf_hash) VALUES {placeholders}", params)  # noqa: S608


def connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """Open the log file in autocommit mode (transactions are explicit) with WAL and synchronous=FULL.

    The connection may be handed between threads but must be used by one thread at a time.
    """
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    if read_only:
        conn.execute("PRAGMA query_only = ON")
    return conn


def create_schema(conn: sqlite3.Connection, extra_schema: str = "") -> None:
    """Switch the file to WAL, create the log's tables and triggers, then run `extra_schema` (caller's DDL).

    Both scripts run on every open, so `extra_schema` must be idempotent (CREATE TABLE IF NOT EXISTS ...).
    """
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise AuditCorrupted(f"the audit log file can not use write-ahead logging (journal mode {mode})")
    conn.executescript(_SCHEMA)
    if extra_schema:
        conn.executescript(extra_schema)


def load_leaf_hashes(conn: sqlite3.Connection) -> list[bytes]:
    """Return every leaf hash in index order, recomputed from the stored leaves.

    Raises AuditCorrupted if the indices have a gap or a leaf no longer hashes to the hash recorded when it
    was appended: an entry edited on disk stops the node at start-up (recomputing costs about 0.1 s per
    100,000 entries), not only at the regulator's next verification.
    """
    hashes: list[bytes] = []
    for idx, leaf, value in conn.execute("SELECT idx, leaf, leaf_hash FROM entries ORDER BY idx"):
        if idx != len(hashes):
            raise AuditCorrupted(f"the entries table jumps from index {len(hashes) - 1} to {idx}")
        computed = leaf_hash(bytes(leaf))
        if computed != bytes(value):
            raise AuditCorrupted(
                f"entry {idx} was changed after it was appended: it no longer hashes as recorded"
            )
        hashes.append(computed)
    return hashes


def iter_entries(conn: sqlite3.Connection, start: int, end: int) -> Iterator[tuple[int, bytes, bytes]]:
    """Yield (index, leaf, recorded leaf hash) for start <= index < end, in order."""
    query = "SELECT idx, leaf, leaf_hash FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx"
    for idx, leaf, value in conn.execute(query, (start, end)):
        yield idx, bytes(leaf), bytes(value)


def load_head_rows(conn: sqlite3.Connection, max_size: int | None = None) -> list[HeadRow]:
    """Return the stored tree heads (tree_size, root, timestamp, node, signature, certificate) by size."""
    limit = -1 if max_size is None else max_size
    query = (
        "SELECT tree_size, root, timestamp, node, signature, certificate_pem FROM tree_heads "
        "WHERE ? < 0 OR tree_size <= ? ORDER BY tree_size"
    )
    return [
        (size, bytes(root), stamp, node, bytes(signature), cert)
        for size, root, stamp, node, signature, cert in conn.execute(query, (limit, limit))
    ]


def rollback(conn: sqlite3.Connection) -> None:
    """End a failed transaction if one is open; a failing ROLLBACK is logged, the original error wins."""
    if not conn.in_transaction:
        return
    try:
        conn.execute("ROLLBACK")
    except sqlite3.Error:
        logger.exception("rolling back a failed audit transaction failed")


def entries_after(conn: sqlite3.Connection, start: int) -> list[bytes]:
    """Recorded leaf hashes of the entries at index >= start, in order (to resynchronize after a failure)."""
    query = "SELECT leaf_hash FROM entries WHERE idx >= ? ORDER BY idx"
    return [bytes(value) for (value,) in conn.execute(query, (start,))]

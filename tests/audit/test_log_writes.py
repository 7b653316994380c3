"""The audit log's writes: append-only storage, group commit, and effects committed with their entry."""

from __future__ import annotations

import contextvars
import sqlite3
import threading
from pathlib import Path

import pytest

from audit import AuditEntry, AuditLog, MerkleTree, encode_leaf, leaf_hash
from crypto import Identity
from tests.audit._log_helpers import entry, wait_until

BUDGETS = "CREATE TABLE IF NOT EXISTS budgets (name TEXT PRIMARY KEY, used INTEGER NOT NULL);"


def charge(name: str, amount: int):
    def in_txn(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO budgets (name, used) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET used = used + ?",
            (name, amount, amount),
        )

    return in_txn


def budget(log: AuditLog, name: str) -> int | None:
    with log.reading() as conn:
        row = conn.execute("SELECT used FROM budgets WHERE name = ?", (name,)).fetchone()
    return None if row is None else row[0]


# --- storage ---


def test_appends_store_canonical_leaves_and_their_hashes(db: Path, node: Identity) -> None:
    with AuditLog(db, node, "node-a") as log:
        assert [log.append(entry(i)) for i in range(5)] == [0, 1, 2, 3, 4]
        assert log.size == 5
        assert log.entries(1, 3) == [encode_leaf(entry(1), 1), encode_leaf(entry(2), 2)]
        with pytest.raises(ValueError):
            log.entries(3, 6)
    raw = sqlite3.connect(db)
    rows = raw.execute("SELECT idx, leaf, leaf_hash FROM entries ORDER BY idx").fetchall()
    assert [(i, bytes(leaf), bytes(h)) for i, leaf, h in rows] == [
        (i, encode_leaf(entry(i), i), leaf_hash(encode_leaf(entry(i), i))) for i in range(5)
    ]
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE entries SET leaf = x'00' WHERE idx = 1",
        "DELETE FROM entries WHERE idx = 2",
        "DELETE FROM entries",
        "INSERT OR REPLACE INTO entries (idx, leaf, leaf_hash) VALUES (1, x'00', x'00')",
        "INSERT INTO entries (idx, leaf, leaf_hash) VALUES (7, x'00', x'00')",
        "UPDATE tree_heads SET root = x'00'",
        "DELETE FROM tree_heads",
        "INSERT INTO tree_heads VALUES (1, x'00', 't', 'node-a', x'00', 'pem')",
    ],
)
def test_tables_are_append_only(db: Path, node: Identity, statement: str) -> None:
    with AuditLog(db, node, "node-a") as log:
        for i in range(3):
            log.append(entry(i))
        log.sign_head()
    raw = sqlite3.connect(db)
    before = raw.execute("SELECT COUNT(*), MAX(idx) FROM entries").fetchone()
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        raw.execute(statement)
    raw.rollback()
    assert raw.execute("SELECT COUNT(*), MAX(idx) FROM entries").fetchone() == before
    with AuditLog(db, node, "node-a") as log:
        assert log.size == 3


def test_node_name_must_match_the_signing_certificate(db: Path, node: Identity) -> None:
    with pytest.raises(ValueError, match="signing certificate"):
        AuditLog(db, node, "node-b")


# --- group commit ---


def test_concurrent_appends_get_unique_contiguous_durable_indices(db: Path, node: Identity) -> None:
    threads, per_thread = 8, 200
    results: dict[int, list[int]] = {}
    log = AuditLog(db, node, "node-a", head_every=10_000)
    commits = []
    log._writer._conn.set_trace_callback(lambda sql: sql == "COMMIT" and commits.append(sql))
    start = threading.Barrier(threads)

    def work(worker: int) -> None:
        start.wait()
        results[worker] = [log.append(entry(worker * 1000 + i)) for i in range(per_thread)]

    workers = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    log.close()

    indices = sorted(i for got in results.values() for i in got)
    assert indices == list(range(threads * per_thread))
    assert len(commits) < 0.9 * threads * per_thread, "concurrent appends should share commits"
    # A batch of plain entries commits as one INSERT in autocommit mode, which traces no COMMIT: count
    # the writer's own commits too.
    assert 0 < log._writer.commits < 0.9 * threads * per_thread, "concurrent appends should share commits"
    for got in results.values():
        assert got == sorted(got)  # one thread's appends keep their order

    with AuditLog(db, node, "node-a") as reopened:
        assert reopened.size == threads * per_thread
        leaves = reopened.entries(0, reopened.size)
    for index, leaf in enumerate(leaves):
        assert f'"index":{index},'.encode() in leaf
    for worker, got in results.items():
        for i, index in enumerate(got):
            assert leaves[index] == encode_leaf(entry(worker * 1000 + i), index)
    assert MerkleTree(leaf_hash(leaf) for leaf in leaves).root() == reopened.root()


def test_single_thread_append_is_durable_on_return(db: Path, node: Identity) -> None:
    log = AuditLog(db, node, "node-a")
    index = log.append(entry(1))
    # Another connection sees the row as soon as append returns: it was committed, not just queued.
    raw = sqlite3.connect(db)
    assert raw.execute("SELECT COUNT(*) FROM entries WHERE idx = ?", (index,)).fetchone()[0] == 1
    log.close()


# --- in_txn ---


def test_in_txn_commits_with_the_entry(db: Path, node: Identity) -> None:
    with AuditLog(db, node, "node-a", extra_schema=BUDGETS) as log:
        log.append(entry(0), in_txn=charge("reveal", 3))
        log.append(entry(1), in_txn=charge("reveal", 4))
        assert budget(log, "reveal") == 7
    with AuditLog(db, node, "node-a", extra_schema=BUDGETS) as log:
        assert budget(log, "reveal") == 7


def test_failing_in_txn_rejects_only_its_own_entry_in_a_shared_batch(db: Path, node: Identity) -> None:
    log = AuditLog(db, node, "node-a", extra_schema=BUDGETS)
    gate, inside = threading.Event(), threading.Event()

    def blocking(conn: sqlite3.Connection) -> None:
        inside.set()
        assert gate.wait(5)

    def failing(conn: sqlite3.Connection) -> None:
        charge("reveal", 100)(conn)
        raise PermissionError("budget exhausted")

    outcomes: dict[str, object] = {}

    def run(name: str, item: AuditEntry, in_txn) -> None:
        try:
            outcomes[name] = log.append(item, in_txn=in_txn)
        except PermissionError as exc:
            outcomes[name] = exc

    first = threading.Thread(target=run, args=("first", entry(0), blocking))
    first.start()
    assert inside.wait(5)  # the writer is now inside the first batch; the next three queue up together
    others = [
        threading.Thread(target=run, args=("ok-1", entry(1), charge("reveal", 1))),
        threading.Thread(target=run, args=("bad", entry(2), failing)),
        threading.Thread(target=run, args=("ok-2", entry(3), charge("reveal", 2))),
    ]
    for queued, thread in enumerate(others, start=1):
        thread.start()
        wait_until(lambda n=queued: log._writer._queue.qsize() == n)
    gate.set()
    for thread in [first, *others]:
        thread.join()

    assert outcomes["first"] == 0
    assert isinstance(outcomes["bad"], PermissionError)
    assert sorted([outcomes["ok-1"], outcomes["ok-2"]]) == [1, 2]
    assert budget(log, "reveal") == 3  # the failing callback's charge was rolled back
    leaves = log.entries(0, log.size)
    assert log.size == 3
    assert all(b'"actor":"user-2"' not in leaf for leaf in leaves)
    log.close()


def test_in_txn_runs_with_the_callers_context(db: Path, node: Identity) -> None:
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")
    seen = []
    with AuditLog(db, node, "node-a") as log:
        request_id.set("req-42")
        log.append(entry(0), in_txn=lambda conn: seen.append(request_id.get()))
    assert seen == ["req-42"]

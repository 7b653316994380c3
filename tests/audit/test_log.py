"""The audit log: append-only storage, group commit, in-transaction callbacks, durability, tree heads."""

from __future__ import annotations

import contextvars
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from audit import (
    EMPTY_ROOT,
    AuditCorrupted,
    AuditEntry,
    AuditLog,
    AuditWriteError,
    MerkleTree,
    encode_leaf,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
    verify_tree_head,
)
from audit import store as audit_store
from crypto import CertificateAuthority, Identity, Role, verify_signature
from crypto.errors import InvalidCertificate

BUDGETS = "CREATE TABLE IF NOT EXISTS budgets (name TEXT PRIMARY KEY, used INTEGER NOT NULL);"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def node(ca: CertificateAuthority) -> Identity:
    return ca.issue("node-a", "acme", Role.PROVIDER)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"


def entry(n: int = 0, **changes: object) -> AuditEntry:
    fields = {
        "time": "2025-03-01T12:00:00.000000Z",
        "node": "node-a",
        "actor": f"user-{n}",
        "org": "beta",
        "role": "consumer",
        "method": "/ipspace.v1.Provider/Reveal",
        "decision": "allow",
        "status": "OK",
        "reason": "allowed by agreement",
        "charges": {"reveal_records": n % 7},
    }
    fields.update(changes)
    return AuditEntry(**fields)  # type: ignore[arg-type]


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


def wait_until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


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


# --- failures ---


def test_disk_full_raises_audit_write_error_and_the_log_recovers(db: Path, node: Identity) -> None:
    with AuditLog(db, node, "node-a") as log:
        log.append(entry(0))
        # A callback shrinks the file's page limit: the next entry that needs a page finds the disk full.
        assert log.append(entry(1), in_txn=lambda c: c.execute("PRAGMA max_page_count = 1")) == 1
        with pytest.raises(AuditWriteError, match="full"):
            log.append(entry(2, reason="x" * 200_000))
        assert log.size == 2
        log.append(entry(3), in_txn=lambda c: c.execute("PRAGMA max_page_count = 1073741823"))
        assert log.size == 3
        assert log.entries(2, 3) == [encode_leaf(entry(3), 2)]


def test_locked_database_raises_audit_write_error(
    db: Path, node: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_store, "BUSY_TIMEOUT_MS", 50)
    with AuditLog(db, node, "node-a") as log:
        log.append(entry(0))
        other = sqlite3.connect(db, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(AuditWriteError, match="locked"):
            log.append(entry(1))
        other.execute("ROLLBACK")
        assert log.append(entry(1)) == 1


def test_a_callback_that_commits_fails_its_batch_and_the_log_resyncs(db: Path, node: Identity) -> None:
    with AuditLog(db, node, "node-a") as log:
        with pytest.raises(AuditWriteError, match="ended the audit transaction"):
            log.append(entry(0), in_txn=lambda c: c.execute("COMMIT"))
        # The stray commit put the entry in the file; the log counted it instead of reusing its index.
        assert log.size == 1
        assert log.append(entry(1)) == 1


def test_close_drains_and_later_appends_fail(db: Path, node: Identity) -> None:
    log = AuditLog(db, node, "node-a")
    results = []
    threads = [threading.Thread(target=lambda i=i: results.append(log.append(entry(i)))) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    log.close()  # idempotent
    assert sorted(results) == list(range(20))
    with pytest.raises(AuditWriteError, match="closed"):
        log.append(entry(99))


def test_reopening_a_rewritten_file_is_refused(db: Path, node: Identity) -> None:
    with AuditLog(db, node, "node-a") as log:
        for i in range(4):
            log.append(entry(i))
        log.sign_head()
    raw = sqlite3.connect(db, isolation_level=None)
    raw.execute("DROP TRIGGER entries_refuse_update")
    raw.execute("UPDATE entries SET leaf = ?, leaf_hash = ? WHERE idx = 1", (b"forged", leaf_hash(b"forged")))
    raw.close()
    with pytest.raises(AuditCorrupted, match="root signed at size 4"):
        AuditLog(db, node, "node-a")


def test_reopening_a_file_with_a_gap_is_refused(db: Path, node: Identity) -> None:
    with AuditLog(db, node, "node-a") as log:
        for i in range(4):
            log.append(entry(i))
    raw = sqlite3.connect(db, isolation_level=None)
    raw.execute("DROP TRIGGER entries_refuse_delete")
    raw.execute("DELETE FROM entries WHERE idx = 1")
    raw.close()
    with pytest.raises(AuditCorrupted, match="jumps from index 0 to 2"):
        AuditLog(db, node, "node-a")


# --- tree heads and proofs ---


def test_heads_are_signed_every_n_entries_and_on_demand(db: Path, node: Identity, ca) -> None:
    with AuditLog(db, node, "node-a", head_every=10, head_interval_s=3600) as log:
        for i in range(25):
            log.append(entry(i))
        head = log.sign_head()
        assert head.tree_size == 25
        assert log.sign_head() == head  # nothing new: the same head
        assert [h.tree_size for h in log.heads()] == [10, 20, 25]
        assert log.tree_head() == head
        for stored in log.heads():
            principal = verify_tree_head(stored, ca.cert_pem)
            assert (principal.name, principal.org) == ("node-a", "acme")
            assert stored.root == log.root(stored.tree_size)
    with AuditLog(db, node, "node-a") as log:
        assert log.tree_head() == head


def test_heads_are_signed_after_an_interval(db: Path, node: Identity) -> None:
    with AuditLog(db, node, "node-a", head_every=1000, head_interval_s=0.1) as log:
        for i in range(3):
            log.append(entry(i))
        wait_until(lambda: log.tree_head().tree_size == 3)


def test_empty_log_head_has_the_empty_root(db: Path, node: Identity) -> None:
    with AuditLog(db, node, "node-a") as log:
        head = log.tree_head()
        assert (head.tree_size, head.root) == (0, EMPTY_ROOT)


def test_head_timestamps_never_go_back(db: Path, node: Identity) -> None:
    times = iter([datetime(2025, 5, 1, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC)])
    with AuditLog(db, node, "node-a", clock=lambda: next(times)) as log:
        log.append(entry(0))
        first = log.sign_head()
        log.append(entry(1))
        second = log.sign_head()
    assert first.timestamp == second.timestamp == "2025-05-01T00:00:00.000000Z"


def test_proofs_verify_against_signed_heads(db: Path, node: Identity) -> None:
    with AuditLog(db, node, "node-a", head_every=1000) as log:
        for i in range(13):
            log.append(entry(i))
        old = log.sign_head()
        for i in range(13, 40):
            log.append(entry(i))
        new = log.sign_head()
        leaf = log.entries(7, 8)[0]
        verify_inclusion(leaf_hash(leaf), 7, new.tree_size, log.inclusion_proof(7, new.tree_size), new.root)
        verify_inclusion(leaf_hash(leaf), 7, old.tree_size, log.inclusion_proof(7, old.tree_size), old.root)
        proof = log.consistency_proof(old.tree_size, new.tree_size)
        verify_consistency(old.tree_size, new.tree_size, old.root, new.root, proof)


def test_signing_certificate_validity_is_checked_at_the_heads_time(tmp_path: Path) -> None:
    ca = CertificateAuthority.create(tmp_path / "ca", now=datetime(2025, 1, 1, tzinfo=UTC))
    short_lived = ca.issue("node-a", "acme", Role.PROVIDER, days=30, now=datetime(2025, 1, 1, tzinfo=UTC))
    inside = datetime(2025, 1, 10, tzinfo=UTC)
    with AuditLog(tmp_path / "a.db", short_lived, "node-a", clock=lambda: inside) as log:
        log.append(entry(0))
        head = log.sign_head()
    # Still verifiable after the certificate expired: the head says when it was signed.
    with pytest.raises(InvalidCertificate, match="expired"):
        verify_signature(short_lived.signing_cert_pem, ca.cert_pem, b"", b"")
    assert verify_tree_head(head, ca.cert_pem).name == "node-a"

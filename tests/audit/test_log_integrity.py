"""The audit log failing closed (write failures, rewritten files) and its signed tree heads and proofs."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from audit import (
    EMPTY_ROOT,
    AuditCorrupted,
    AuditLog,
    AuditWriteError,
    encode_leaf,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
    verify_tree_head,
)
from audit import store as audit_store
from crypto import CertificateAuthority, Identity, Role, verify_signature
from crypto.errors import InvalidCertificate
from tests.audit._log_helpers import entry, wait_until

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

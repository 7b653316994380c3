"""Leader-based group commit: who writes an entry, how many commits appends share, the timer, and close."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from audit import AuditLog, AuditWriteError
from crypto import Identity
from tests.audit._log_helpers import entry, wait_until


def on_thread(seen: dict[str, int], name: str):
    """An in_txn callback that records which thread ran it."""

    def in_txn(conn: sqlite3.Connection) -> None:
        seen[name] = threading.get_ident()

    return in_txn


def hold_the_lead(log: AuditLog) -> tuple[threading.Thread, threading.Event]:
    """Start an append whose callback blocks, so its thread keeps the commit lock until the event is set."""
    inside, release = threading.Event(), threading.Event()

    def blocking(conn: sqlite3.Connection) -> None:
        inside.set()
        assert release.wait(5)

    leader = threading.Thread(target=log.append, args=(entry(0),), kwargs={"in_txn": blocking})
    leader.start()
    assert inside.wait(5)
    return leader, release


def test_a_lone_caller_commits_on_its_own_thread(db: Path, node: Identity) -> None:
    seen: dict[str, int] = {}
    with AuditLog(db, node, "node-a") as log:
        for i in range(3):
            assert log.append(entry(i), in_txn=on_thread(seen, f"append-{i}")) == i
        assert set(seen.values()) == {threading.get_ident()}
        assert log._writer.commits == 3


def test_queued_entries_are_committed_together_by_another_threads_lead(db: Path, node: Identity) -> None:
    seen: dict[str, int] = {}
    own: dict[str, int] = {}
    with AuditLog(db, node, "node-a") as log:
        leader, release = hold_the_lead(log)

        def follower(name: str, number: int) -> None:
            own[name] = threading.get_ident()
            log.append(entry(number), in_txn=on_thread(seen, name))

        followers = [threading.Thread(target=follower, args=(f"f{n}", n)) for n in range(1, 4)]
        for queued, thread in enumerate(followers, start=1):
            thread.start()
            wait_until(lambda n=queued: log._writer._queue.qsize() == n)
        release.set()
        for thread in [leader, *followers]:
            thread.join(5)
        assert log.size == 4
        # The first queued thread was handed the lead and wrote all three in one more commit.
        assert seen["f1"] == seen["f2"] == seen["f3"] == own["f1"]
        assert own["f2"] != seen["f2"] and own["f3"] != seen["f3"]
        assert log._writer.commits == 2


def test_concurrent_appends_share_commits(db: Path, node: Identity) -> None:
    threads, per_thread = 8, 50
    with AuditLog(db, node, "node-a") as log:
        start = threading.Barrier(threads)

        def work() -> None:
            start.wait()
            for i in range(per_thread):
                log.append(entry(i))

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        assert log.size == threads * per_thread
        assert 0 < log._writer.commits < 0.9 * threads * per_thread


def test_an_append_that_cannot_be_written_in_time_fails_and_is_never_written(
    db: Path, node: Identity
) -> None:
    with AuditLog(db, node, "node-a", write_timeout_s=0.2) as log:
        leader, release = hold_the_lead(log)
        with pytest.raises(AuditWriteError, match=r"not written within 0\.2s"):
            log.append(entry(1))
        assert log._writer._queue.qsize() == 0  # withdrawn: no later leader can write it
        release.set()
        leader.join(5)
        assert log.size == 1
        assert log.append(entry(2)) == 1


def test_the_timer_signs_a_due_head_with_no_further_appends(
    db: Path, node: Identity, monkeypatch: pytest.MonkeyPatch
) -> None:
    with AuditLog(db, node, "node-a", head_every=1000, head_interval_s=0.5) as log:
        signers: list[str] = []
        sign_and_store = log._sign_and_store

        def recording(conn: sqlite3.Connection):
            signers.append(threading.current_thread().name)
            return sign_and_store(conn)

        monkeypatch.setattr(log, "_sign_and_store", recording)
        for i in range(3):
            log.append(entry(i))
        assert log.heads() == []  # not due yet: the appends alone sign nothing
        wait_until(lambda: [head.tree_size for head in log.heads()] == [3])
        assert signers == ["audit-maintenance"]


def test_close_from_another_thread_leaves_no_appender_waiting(db: Path, node: Identity) -> None:
    log = AuditLog(db, node, "node-a", head_every=10_000)
    written: list[int] = []
    refused: list[AuditWriteError] = []

    def appender(worker: int) -> None:
        for i in range(10_000):
            try:
                written.append(log.append(entry(worker * 10_000 + i)))
            except AuditWriteError as error:
                refused.append(error)
                return

    workers = [threading.Thread(target=appender, args=(w,)) for w in range(8)]
    for thread in workers:
        thread.start()
    wait_until(lambda: len(written) >= 50)
    closer = threading.Thread(target=log.close)
    closer.start()
    for thread in [closer, *workers]:
        thread.join(10)
        assert not thread.is_alive(), "a thread was still waiting on the closed log"
    assert len(refused) == 8 and all("closed" in str(error) for error in refused)
    assert sorted(written) == list(range(len(written)))
    with AuditLog(db, node, "node-a") as reopened:
        assert reopened.size == len(written)

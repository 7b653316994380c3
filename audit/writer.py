"""Leader-based group commit: whichever appending thread holds the commit lock writes everything pending.

An appender queues its job and tries the commit lock. If it gets it, it leads: it takes everything pending
(up to a batch limit), writes it in one transaction (an entry with an `in_txn` callback inside its own
SAVEPOINT, so a failing callback undoes only that entry), commits once (one fsync), extends the Merkle tree
(`after_commit`), marks the jobs done, wakes their threads and frees the lock. Otherwise it sleeps on its
job's latch (a plain lock: one C-level wait) until a leader wrote its job or, freeing the lock, handed the
lead to the oldest pending job. A lone caller commits on its own thread with no hand-off; appends arriving
during one fsync share the next, and their threads wake together.

Guarantees: `append` returns an index only after the COMMIT holding its entry returned (WAL,
synchronous=FULL: durable); indices are contiguous and one thread's appends keep their order. The
connection, the next index and the tree change only under the commit lock. Every job a leader takes is
marked done, with its index or an error, before its thread is woken.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from audit import store
from audit.entry import PreparedLeaf
from audit.errors import AuditWriteError
from audit.merkle import leaf_hash

logger = logging.getLogger(__name__)

InTxn = Callable[[sqlite3.Connection], None]
_T = TypeVar("_T")
_SAVEPOINT = "audit_entry"
_ONE_STATEMENT_ROWS = 500  # a batch of plain entries up to this size is written by one INSERT


@dataclass(eq=False)
class _Append:
    leaf: PreparedLeaf
    in_txn: InTxn | None
    context: contextvars.Context | None
    done: bool = False
    index: int | None = None
    error: BaseException | None = None
    # Held from creation, released once: when the job is done or its thread is handed the lead.
    latch: threading.Lock = field(default_factory=threading.Lock)
    woken: bool = False

    def __post_init__(self) -> None:
        self.latch.acquire()


def _wake_once(job: _Append) -> None:
    if not job.woken:
        job.woken = True
        job.latch.release()


class _PendingJobs:
    """Appends waiting for a leader, in arrival order. Its lock guards the list and the latches only."""

    def __init__(self, limit: int) -> None:
        self._lock = threading.Lock()
        self._jobs: list[_Append] = []
        self._limit = limit
        self.closed = False

    def qsize(self) -> int:
        return len(self._jobs)

    def put(self, job: _Append) -> bool:
        """Add `job` unless the list is full (then False). Raises AuditWriteError once closed."""
        with self._lock:
            if self.closed:
                raise AuditWriteError("the audit log is closed")
            if len(self._jobs) >= self._limit:
                return False
            self._jobs.append(job)
            return True

    def take(self, limit: int) -> list[_Append]:
        with self._lock:
            batch = self._jobs[:limit]
            del self._jobs[:limit]
            return batch

    def withdraw(self, job: _Append) -> bool:
        """Remove `job` unless a leader has taken it; return whether it was removed."""
        with self._lock:
            try:
                self._jobs.remove(job)
            except ValueError:
                return False
            return True

    def wake(self, jobs: list[_Append]) -> None:
        """Release the latches of `jobs`, each at most once."""
        with self._lock:
            for job in jobs:
                _wake_once(job)

    def wake_oldest(self) -> None:
        """Hand the lead to the oldest pending job's thread (called right after the lock was freed)."""
        with self._lock:
            if self._jobs:
                _wake_once(self._jobs[0])

    def close(self) -> None:
        with self._lock:
            self.closed = True


class GroupCommitWriter:
    """The single writer of one log file. Thread-safe; `close()` commits what is pending and closes `conn`.

    The writer owns `conn` from construction on. `after_commit(leaf_hashes)` runs right after each commit,
    before any of its appends returns. `maintenance(conn)` runs after a commit for which `maintenance_due()`
    says so, and from a timer thread every `tick_s` seconds when it is due, so heads get signed while idle.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        next_index: int,
        *,
        after_commit: Callable[[list[bytes]], None],
        maintenance: Callable[[sqlite3.Connection], None],
        maintenance_due: Callable[[], bool],
        tick_s: float,
        max_pending: int = 10_000,
        max_batch: int = 1_000,
    ) -> None:
        self._conn = conn
        self._conn_open = True
        self._next_index = next_index
        self._after_commit = after_commit
        self._maintenance = maintenance
        self._maintenance_due = maintenance_due
        self._tick_s = tick_s
        self._max_batch = max_batch
        self._queue = _PendingJobs(max_pending)
        self._commit_lock = threading.Lock()
        self._commits = 0
        self._stop_ticking = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="audit-maintenance", daemon=True)
        self._ticker.start()

    @property
    def commits(self) -> int:
        """Transactions committed for appends so far (fewer than the appends when they share commits)."""
        return self._commits

    def append(self, leaf: PreparedLeaf, in_txn: InTxn | None, *, timeout_s: float) -> int:
        """Write an entry and return its index once its transaction has committed durably.

        Raises the callback's own exception if `in_txn` raised (the entry is not written), and
        AuditWriteError if the pending list stayed full, the log is closed, the transaction failed, or the
        entry was not committed within `timeout_s`.
        """
        deadline = time.monotonic() + timeout_s
        job = _Append(leaf, in_txn, contextvars.copy_context() if in_txn is not None else None)
        while not self._queue.put(job):  # full (one job per waiting thread, so rare): make room
            if not self._acquire(deadline):
                raise AuditWriteError(f"the audit queue stayed full for {timeout_s:g}s: writes lag behind")
            try:
                self._commit_batch(self._queue.take(self._max_batch))
            finally:
                self._unlock()
        if not self._commit_lock.acquire(blocking=False):
            if not job.latch.acquire(timeout=max(0.0, deadline - time.monotonic())):
                return self._give_up(job, timeout_s)
            if job.done:
                return self._outcome(job)
            if not self._acquire(deadline):  # handed the lead; the lock's holder is finishing
                return self._give_up(job, timeout_s)
        try:
            while not job.done and (batch := self._queue.take(self._max_batch)):
                self._commit_batch(batch)
            if self._conn_open and self._maintenance_due():
                self._maintain()
        finally:
            self._unlock()
        return self._outcome(job)

    def call(self, action: Callable[[sqlite3.Connection], _T], *, timeout_s: float) -> _T:
        """Commit what is pending, then run `action(conn)` under the commit lock; return its result.

        Raises what `action` raises, and AuditWriteError if the log is closed or the lock was not free
        within `timeout_s`.
        """
        if self._queue.closed:
            raise AuditWriteError("the audit log is closed")
        if not self._acquire(time.monotonic() + timeout_s):
            raise AuditWriteError(f"the audit writer did not answer within {timeout_s:g}s")
        try:
            if not self._conn_open:
                raise AuditWriteError("the audit log is closed")
            self._drain()
            return action(self._conn)
        finally:
            self._unlock()

    def close(self, timeout_s: float) -> bool:
        """Refuse new work, commit what is pending, stop the timer, close the file. Idempotent.

        Returns whether all of it was done within `timeout_s` (not when a write held the lock too long).
        """
        deadline = time.monotonic() + timeout_s
        self._queue.close()
        self._stop_ticking.set()
        self._ticker.join(timeout_s)
        if not self._acquire(deadline):
            return False
        try:
            if self._conn_open:
                try:
                    self._drain()
                finally:
                    self._conn_open = False
                    self._conn.close()
        finally:
            self._unlock()
        return not self._ticker.is_alive()

    def _acquire(self, deadline: float) -> bool:
        return self._commit_lock.acquire(timeout=max(0.0, deadline - time.monotonic()))

    def _unlock(self) -> None:
        self._commit_lock.release()
        self._queue.wake_oldest()  # a job queued while the lock was held must not wait for nobody

    def _give_up(self, job: _Append, timeout_s: float) -> int:
        if job.done:  # written just as the wait ran out
            return self._outcome(job)
        if self._queue.withdraw(job):
            self._queue.wake_oldest()  # the lead may have been handed to us: pass it on
            raise AuditWriteError(f"the audit entry was not written within {timeout_s:g}s: the log is busy")
        raise AuditWriteError(f"the audit entry was not confirmed within {timeout_s:g}s")

    @staticmethod
    def _outcome(job: _Append) -> int:
        if job.error is not None:
            raise job.error
        if job.index is None:
            raise AuditWriteError("the audit entry was lost before it was written")
        return job.index

    def _drain(self) -> None:
        while batch := self._queue.take(self._max_batch):
            self._commit_batch(batch)

    def _commit_batch(self, jobs: list[_Append]) -> None:
        """Write `jobs` in one transaction; every job ends done, with its index or its error, and is woken."""
        try:
            if jobs:
                self._commit(jobs)
        finally:
            for job in jobs:
                if job.index is None and job.error is None:
                    job.error = AuditWriteError("the audit writer failed before finishing this entry")
                job.done = True
            self._queue.wake(jobs)

    def _commit(self, jobs: list[_Append]) -> None:
        conn = self._conn
        try:
            if len(jobs) <= _ONE_STATEMENT_ROWS and all(job.in_txn is None for job in jobs):
                # One INSERT in autocommit mode is a transaction of its own: as atomic and durable as
                # BEGIN ... COMMIT, with one call into SQLite (and one wait for the GIL) instead of three.
                placed = [(job, _row(job, self._next_index + n)) for n, job in enumerate(jobs)]
                conn.execute(_insert_rows_sql(len(placed)), [v for _, row in placed for v in row])
            else:
                conn.execute("BEGIN IMMEDIATE")
                placed = self._insert_mixed(jobs)
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            store.rollback(conn)
            for job in jobs:
                if job.error is None:
                    job.error = AuditWriteError(f"the audit entry was not written: {exc}")
                    job.error.__cause__ = exc
            self._resync()
            return
        except BaseException:
            store.rollback(conn)  # leave no transaction open for the next leader
            raise
        self._commits += 1
        self._after_commit([row[2] for _, row in placed])
        self._next_index += len(placed)
        for job, row in placed:  # indices only once the tree holds them too
            job.index = row[0]

    def _insert_mixed(self, jobs: list[_Append]) -> list[tuple[_Append, store.EntryRow]]:
        """Insert the entries inside the open transaction; return those that stay, with their rows."""
        placed: list[tuple[_Append, store.EntryRow]] = []
        plain_rows: list[store.EntryRow] = []  # entries without a callback, inserted together
        for job in jobs:
            row = _row(job, self._next_index + len(placed))
            if job.in_txn is not None:
                store.insert_entries(self._conn, plain_rows)
                plain_rows.clear()
                if not self._insert_with_callback(job, row):
                    continue
            else:
                plain_rows.append(row)
            placed.append((job, row))
        store.insert_entries(self._conn, plain_rows)
        return placed

    def _insert_with_callback(self, job: _Append, row: store.EntryRow) -> bool:
        """Insert one entry and run its callback (in the appender's context) inside a savepoint.

        Returns whether the entry stays: a raising callback's entry and changes are undone and its exception
        kept for its appender. Raises sqlite3.Error for a failure of the log's own statements.
        """
        assert job.in_txn is not None and job.context is not None
        conn = self._conn
        conn.execute(f"SAVEPOINT {_SAVEPOINT}")
        conn.execute(store.INSERT_ENTRY, row)
        try:
            job.context.run(job.in_txn, conn)
        except Exception as exc:  # noqa: BLE001 - handed to the appending thread, which re-raises it
            job.error = exc
            conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
            conn.execute(f"RELEASE {_SAVEPOINT}")
            return False
        if not conn.in_transaction:
            raise sqlite3.OperationalError("an in_txn callback ended the audit transaction")
        conn.execute(f"RELEASE {_SAVEPOINT}")
        return True

    def _resync(self) -> None:
        """After a failed batch, catch up with rows that reached the file anyway (a callback's COMMIT)."""
        try:
            stray = store.entries_after(self._conn, self._next_index)
        except sqlite3.Error:
            logger.exception("could not re-read the audit log after a failed write")
            return
        if stray:
            logger.error("%d audit entries were committed outside the writer's transaction", len(stray))
            self._next_index += len(stray)
            self._after_commit(stray)

    def _tick(self) -> None:
        """Timer thread: run due maintenance each tick, holding the lock only while working, never asleep."""
        while not self._stop_ticking.wait(self._tick_s):
            if not self._maintenance_due() or not self._commit_lock.acquire(timeout=self._tick_s):
                continue
            try:
                if self._conn_open:
                    self._maintain()
            finally:
                self._unlock()

    def _maintain(self) -> None:
        try:
            self._maintenance(self._conn)
        except Exception:
            # Maintenance (automatic tree heads) must never fail an append; the next tick retries.
            logger.exception("audit log maintenance failed")


def _row(job: _Append, index: int) -> store.EntryRow:
    leaf = job.leaf.at(index)
    return (index, leaf, leaf_hash(leaf))


@functools.lru_cache(maxsize=64)
def _insert_rows_sql(count: int) -> str:
    return store.INSERT_ENTRY.replace("(?, ?, ?)", ", ".join(["(?, ?, ?)"] * count))

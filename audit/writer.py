"""Group commit: one thread owns the write connection and commits queued appends in shared transactions.

Appending threads enqueue their entry and wait. The writer takes everything queued (up to a batch limit),
writes each entry, running its `in_txn` callback inside a SAVEPOINT so a failing callback undoes only its
own entry, commits once (one fsync for the whole batch), and only then wakes the waiters with their index or
their error. Concurrent appends therefore share an fsync, and a lone append costs about one fsync. Under
load the wake-up is put off until the next batch's statements have run (see `_run`), which keeps woken
threads from holding the GIL while the writer needs it.

Everything that writes the file runs on this thread (appends and tree heads alike), so the tree in memory
and the table never race. Small jobs submitted with `call` run after the appends of the same batch.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from audit import store
from audit.entry import PreparedLeaf
from audit.errors import AuditWriteError
from audit.merkle import leaf_hash

logger = logging.getLogger(__name__)

InTxn = Callable[[sqlite3.Connection], None]
_T = TypeVar("_T")
_STOP = object()
_SAVEPOINT = "audit_entry"


@dataclass(eq=False)
class _Append:
    leaf: PreparedLeaf
    in_txn: InTxn | None
    context: contextvars.Context | None
    done: threading.Event = field(default_factory=threading.Event)
    index: int | None = None
    error: BaseException | None = None


@dataclass(eq=False)
class _Call:
    action: Callable[[sqlite3.Connection], Any]
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class GroupCommitWriter:
    """The single writer of one log file. Thread-safe; `close()` drains the queue and stops the thread.

    The writer owns `conn` from construction on and closes it when its thread ends.

    `after_commit(leaf_hashes)` runs on the writer thread right after each commit, before its waiters wake;
    `maintenance(conn)` runs when the queue is empty (at least every `tick_s` seconds) and after any batch
    for which `maintenance_due()` says so.
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
        self._next_index = next_index
        self._after_commit = after_commit
        self._maintenance = maintenance
        self._maintenance_due = maintenance_due
        self._tick_s = tick_s
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._slots = threading.BoundedSemaphore(max_pending)
        self._state = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._thread.start()

    def append(self, leaf: PreparedLeaf, in_txn: InTxn | None, *, timeout_s: float) -> int:
        """Queue an entry and return its index once committed durably.

        Raises the callback's own exception if `in_txn` raised (the entry is not written), and
        AuditWriteError if the queue stayed full, the log is closed, the transaction failed, or no
        confirmation came within `timeout_s`.
        """
        context = contextvars.copy_context() if in_txn is not None else None
        job = _Append(leaf, in_txn, context)
        self._submit(job, timeout_s)
        if not job.done.wait(timeout_s):
            raise AuditWriteError(f"the audit entry was not confirmed within {timeout_s:g}s")
        if job.error is not None:
            raise job.error
        assert job.index is not None
        return job.index

    def call(self, action: Callable[[sqlite3.Connection], _T], *, timeout_s: float) -> _T:
        """Run `action(conn)` on the writer thread after everything queued before it; return its result."""
        job = _Call(action)
        self._submit(job, timeout_s)
        if not job.done.wait(timeout_s):
            raise AuditWriteError(f"the audit writer did not answer within {timeout_s:g}s")
        if job.error is not None:
            raise job.error
        return job.result

    def close(self, timeout_s: float) -> bool:
        """Stop accepting work, let the writer finish what is queued; return whether it stopped in time."""
        with self._state:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _submit(self, job: _Append | _Call, timeout_s: float) -> None:
        if not self._slots.acquire(timeout=timeout_s):
            raise AuditWriteError(
                f"the audit queue stayed full for {timeout_s:g}s: writes are not keeping up"
            )
        with self._state:
            if self._closed:
                self._slots.release()
                raise AuditWriteError("the audit log is closed")
            self._queue.put(job)

    def _run(self) -> None:
        # Appends of the last batch: committed, but their threads not woken yet. When more work is queued,
        # the writer first runs the next batch's statements (cheap, CPU only) and wakes these threads just
        # before the next COMMIT: woken threads compete for the GIL, and the fsync is the one wait that
        # does not need it. Nobody is woken before their own COMMIT has returned.
        unwoken: list[_Append] = []
        try:
            while True:
                batch = self._take_batch(block=not unwoken)
                if not batch:
                    unwoken = self._wake(unwoken)
                    self._maintain()
                    continue
                unwoken = self._process(batch, unwoken)
                if batch[-1] is _STOP:
                    return
                if self._maintenance_due():
                    unwoken = self._wake(unwoken)
                    self._maintain()
        finally:
            self._wake(unwoken)
            with self._state:
                self._closed = True
            self._fail_leftovers()
            self._conn.close()

    def _take_batch(self, *, block: bool) -> list[object]:
        """Everything queued, up to the batch limit; waits up to one tick for the first item if `block`."""
        try:
            first = self._queue.get(timeout=self._tick_s) if block else self._queue.get_nowait()
        except queue.Empty:
            return []
        batch = [first]
        while len(batch) < self._max_batch and batch[-1] is not _STOP:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _process(self, batch: list[object], unwoken: list[_Append]) -> list[_Append]:
        """Commit the batch's appends and run its calls; return the appends whose threads are still asleep."""
        appends = [job for job in batch if isinstance(job, _Append)]
        try:
            if appends:
                self._commit(appends, before_commit=lambda: self._wake(unwoken))
            self._wake(unwoken)
            for job in batch:
                if isinstance(job, _Call):
                    self._run_call(job)
        except BaseException:
            # Nobody may be left waiting: committed jobs keep their result, the others get an error.
            self._wake(unwoken)
            for job in batch:
                if isinstance(job, _Append | _Call) and not job.done.is_set():
                    job.error = job.error or AuditWriteError("the audit writer failed before finishing")
                    self._finish(job)
            raise
        return appends

    def _wake(self, jobs: list[_Append]) -> list[_Append]:
        for job in jobs:
            self._finish(job)
        return []

    def _commit(self, jobs: list[_Append], *, before_commit: Callable[[], object]) -> None:
        conn = self._conn
        index = self._next_index
        committed: list[bytes] = []
        plain_rows: list[store.EntryRow] = []  # entries without a callback, inserted together
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in jobs:
                leaf = job.leaf.at(index)
                row = (index, leaf, leaf_hash(leaf))
                if job.in_txn is None:
                    plain_rows.append(row)
                else:
                    store.insert_entries(conn, plain_rows)
                    plain_rows.clear()
                    if not self._insert_with_callback(job, row):
                        continue
                job.index = index
                committed.append(row[2])
                index += 1
            store.insert_entries(conn, plain_rows)
            before_commit()
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            store.rollback(conn)
            for job in jobs:
                if job.error is None:
                    job.index = None
                    job.error = AuditWriteError(f"the audit entry was not written: {exc}")
                    job.error.__cause__ = exc
            self._resync()
        else:
            self._next_index = index
            self._after_commit(committed)

    def _insert_with_callback(self, job: _Append, row: store.EntryRow) -> bool:
        """Insert one entry and run its callback inside a savepoint; undo both if the callback raises.

        Returns whether the entry stays. Raises sqlite3.Error for a failure of the log's own statements,
        which fails the whole batch.
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

    def _run_call(self, job: _Call) -> None:
        try:
            job.result = job.action(self._conn)
        except Exception as exc:  # noqa: BLE001 - handed to the calling thread, which re-raises it
            job.error = exc
        self._finish(job)

    def _maintain(self) -> None:
        try:
            self._maintenance(self._conn)
        except Exception:
            # Maintenance (automatic tree heads) must never stop the writer; the next tick retries.
            logger.exception("audit log maintenance failed")

    def _finish(self, job: _Append | _Call) -> None:
        if not job.done.is_set():
            self._slots.release()
            job.done.set()

    def _fail_leftovers(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(job, _Append | _Call):
                job.error = AuditWriteError("the audit log closed before this write was handled")
                self._finish(job)

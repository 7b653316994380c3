"""The coordinator's one SQLite file (jobs, rounds, registered agreements), opened the same way everywhere.

WAL lets the API read while the ServerApp process writes rounds; ``synchronous=FULL`` makes a committed state
change survive a power cut, which is what "survives a coordinator restart" rests on. Each operation opens
its own short-lived connection, so the store is safe to share between threads and processes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

BUSY_TIMEOUT_S = 10.0


def connect(path: Path) -> sqlite3.Connection:
    """An autocommit connection (transactions are explicit, see `transaction`) with rows as mappings."""
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA foreign_keys=ON")
    return connection


@contextmanager
def transaction(path: Path) -> Iterator[sqlite3.Connection]:
    """One write transaction taken up front (BEGIN IMMEDIATE): a read-check-write inside it is atomic."""
    with closing(connect(path)) as connection:
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")


@contextmanager
def reading(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection for reads; WAL gives each statement a consistent snapshot."""
    with closing(connect(path)) as connection:
        yield connection


def create_schema(path: Path, statements: str) -> None:
    """Create the file (and its directory) if needed, switch it to WAL and run ``statements``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(connect(path)) as connection:
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise OSError(f"{path}: SQLite refused WAL mode (got {mode!r}); is it on a network filesystem?")
        connection.executescript(statements)

"""The node's dataset store: one SQLite file (`datasets.db` in the node directory), one table per dataset.

Only the node uses this module; gRPC handlers reach it through a grant that narrows it to what a decision
allows. Every identifier that reaches SQL was checked against [a-z][a-z0-9_]* at import and is checked again
when read back from the database, and every value travels as a bound parameter.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from node.field_stats import FieldStatistics
from node.mock_rows import synthesise_mock_rows
from node.store_embeddings import SCHEMA as _EMBEDDINGS_SCHEMA
from node.store_embeddings import (
    Embedder,
    RecordEmbeddings,
    delete_embeddings,
    embed_import,
    embedded_field_groups,
    read_embeddings,
    write_embeddings,
)
from node.store_errors import (
    DatasetExists,
    InvalidDataset,
    NotEmbedded,
    StoreError,
    UnknownDataset,
    UnknownField,
)
from node.store_import import CsvImport, check_dataset_name, table_name
from node.store_schema import FieldSpec, FieldType, Value, check_identifier, quote_identifier

__all__ = [
    "DATASETS_DB",
    "DatasetDescription",
    "DatasetExists",
    "DatasetInfo",
    "DatasetStore",
    "FetchResult",
    "FieldSpec",
    "FieldStatistics",
    "FieldType",
    "InvalidDataset",
    "NotEmbedded",
    "RecordEmbeddings",
    "StoreError",
    "UnknownDataset",
    "UnknownField",
]

DATASETS_DB = "datasets.db"
MOCK_ROWS_SHOWN = 20
_FETCH_CHUNK = 500  # ids per query, well under SQLite's bound-parameter limit

_METADATA_SCHEMA = """
CREATE TABLE IF NOT EXISTS datasets (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    source TEXT NOT NULL,
    source_sha256 TEXT NOT NULL,
    id_field TEXT NOT NULL,
    row_count INTEGER NOT NULL,
    schema_json TEXT NOT NULL,
    statistics_json TEXT NOT NULL
)
"""


@dataclass(frozen=True)
class DatasetInfo:
    """What the catalog says about a dataset. `source` is its provenance and attribution."""

    name: str
    description: str
    source: str
    source_sha256: str  # of the imported file's bytes
    id_field: str
    row_count: int
    schema: tuple[FieldSpec, ...]

    @property
    def fields(self) -> tuple[str, ...]:
        """Field names in column order (the id field among them)."""
        return tuple(field.name for field in self.schema)


@dataclass(frozen=True)
class DatasetDescription:
    """Schema, statistics and mock rows. `mock_rows` are synthetic (ids "mock-<n>"): never real records."""

    info: DatasetInfo
    statistics: tuple[FieldStatistics, ...]
    mock_rows: tuple[dict[str, Value], ...]
    mock_seed: int


class FetchResult(NamedTuple):
    """Rows found, in request order (each id once), and the requested ids the dataset does not hold."""

    rows: tuple[dict[str, Value], ...]
    missing_ids: tuple[str, ...]


class DatasetStore:
    """Datasets of one node. Each call opens its own connection, so one store may serve many threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._closed = False
        self._reader = _Reader()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        with self._connect() as connection:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute(_METADATA_SCHEMA)
            connection.executescript(_EMBEDDINGS_SCHEMA)

    @classmethod
    def for_node(cls, node_directory: Path) -> DatasetStore:
        return cls(Path(node_directory) / DATASETS_DB)

    def close(self) -> None:
        """Refuse further calls and close the read connections of every thread."""
        self._closed = True
        with self._readers_lock:
            for connection in self._readers:
                connection.close()
            self._readers.clear()

    def import_csv(
        self,
        name: str,
        csv_path: Path,
        *,
        id_field: str,
        description: str,
        source: str,
        replace: bool = False,
        embed_fields: Sequence[str] = (),
        embed_each: Sequence[str] = (),
        embedder: Embedder | None = None,
    ) -> DatasetInfo:
        """Import a CSV (plain or gzip) as dataset `name`, all or nothing, and compute its statistics.

        Column types are inferred (int, float, ISO date, text; the id field is always text); empty cells are
        missing values. With `embed_fields` each record's text in those fields (joined) is embedded (by
        `embedder`, all-MiniLM-L6-v2 when None) and stored as one set, for matching; `embed_each` stores one
        set per field (a phrase pair's anchor and target, for training the matching head). Raises
        InvalidDataset (bad name or header, ragged row, missing or repeated id, an embedded field that is not
        text, a field group named twice) or DatasetExists (the name is taken and `replace` is false). On any
        error nothing is stored.
        """
        plan = CsvImport.prepare(name, Path(csv_path), id_field=id_field)
        groups = ([tuple(embed_fields)] if embed_fields else []) + [(field,) for field in embed_each]
        if len(set(groups)) != len(groups):
            raise InvalidDataset(f"a group of embedded fields is named twice: {[list(g) for g in groups]}")
        embedding_sets = []
        if groups:  # before the write transaction: embedding takes seconds to minutes
            if embedder is None:
                from models.matching.embeddings import TextEmbedder

                embedder = TextEmbedder()
            embedding_sets = [embed_import(plan, group, embedder) for group in groups]
        with self._connect() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                if connection.execute("SELECT 1 FROM datasets WHERE name = ?", (name,)).fetchone():
                    if not replace:
                        raise DatasetExists(name)
                    connection.execute("DELETE FROM datasets WHERE name = ?", (name,))
                    delete_embeddings(connection, name)
                row_count, statistics = plan.write(connection)
                if embedding_sets:
                    write_embeddings(connection, name, embedding_sets)
                info = DatasetInfo(name, description, source, plan.sha256, id_field, row_count, plan.schema)
                connection.execute(
                    "INSERT INTO datasets (name, description, source, source_sha256, id_field, row_count,"
                    " schema_json, statistics_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        name,
                        description,
                        source,
                        plan.sha256,
                        id_field,
                        row_count,
                        json.dumps([[field.name, field.type.value] for field in plan.schema]),
                        json.dumps([entry.to_json() for entry in statistics]),
                    ),
                )
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        return info

    def info(self, name: str) -> DatasetInfo:
        """The catalog entry of one dataset; raises UnknownDataset."""
        reader = self._read()
        info = reader.catalog.get(name)
        if info is None:
            raise UnknownDataset(name)
        return info

    def describe(self, name: str, *, mock_rows: int = MOCK_ROWS_SHOWN, seed: int = 0) -> DatasetDescription:
        """Schema, row count, the statistics computed at import, and up to 20 mock rows.

        The same seed over the same data gives the same mock rows. Raises UnknownDataset.
        """
        reader = self._read()
        key = (name, min(mock_rows, MOCK_ROWS_SHOWN), seed)
        if key in reader.descriptions:
            return reader.descriptions[key]
        connection = reader.connection
        info = self.info(name)
        (statistics_json,) = connection.execute(
            "SELECT statistics_json FROM datasets WHERE name = ?", (name,)
        ).fetchone()
        mock = synthesise_mock_rows(
            connection,
            table_name(name),
            info.schema,
            info.id_field,
            info.row_count,
            count=min(mock_rows, MOCK_ROWS_SHOWN),
            seed=seed,
        )
        statistics = tuple(FieldStatistics.from_json(entry) for entry in json.loads(statistics_json))
        description = DatasetDescription(info, statistics, mock, seed)
        reader.descriptions[key] = description
        return description

    def fetch(self, name: str, record_ids: Sequence[str], fields: Sequence[str]) -> FetchResult:
        """Return only `fields` (plus the id field, first) of the records with `record_ids`.

        Rows come in request order, each id once; ids the dataset does not hold are listed in `missing_ids`
        for the caller to judge. Raises UnknownDataset, UnknownField (before any row is read), and TypeError
        for an id that is not a string.
        """
        connection = self._read().connection
        info = self.info(name)
        for field in fields:
            if field not in info.fields:
                raise UnknownField(name, field)
        columns = [info.id_field, *dict.fromkeys(field for field in fields if field != info.id_field)]
        wanted = list(dict.fromkeys(_require_str(record_id) for record_id in record_ids))
        select = ", ".join(quote_identifier(column) for column in columns)
        found: dict[str, dict[str, Value]] = {}
        for start in range(0, len(wanted), _FETCH_CHUNK):
            chunk = wanted[start : start + _FETCH_CHUNK]
            query = (
                f"SELECT {select} FROM {quote_identifier(table_name(name))} "  # noqa: S608 (checked identifiers)
                f"WHERE {quote_identifier(info.id_field)} IN ({', '.join('?' * len(chunk))})"
            )
            for values in connection.execute(query, chunk):
                found[values[0]] = dict(zip(columns, values, strict=True))
        rows = tuple(found[record_id] for record_id in wanted if record_id in found)
        return FetchResult(rows, tuple(record_id for record_id in wanted if record_id not in found))

    def rows(self, name: str) -> tuple[dict[str, Value], ...]:
        """Every record of `name` with every field, in import order.

        For computation the provider runs on its own node (a local training step); no reply may carry them.
        Raises UnknownDataset.
        """
        connection = self._read().connection
        info = self.info(name)
        select = ", ".join(quote_identifier(field) for field in info.fields)
        query = f"SELECT {select} FROM {quote_identifier(table_name(name))} ORDER BY rowid"  # noqa: S608
        return tuple(dict(zip(info.fields, values, strict=True)) for values in connection.execute(query))

    def embeddings(self, name: str, fields: Sequence[str] | None = None) -> RecordEmbeddings:
        """The vectors computed when `name` was imported, in import order: of the set that embeds exactly
        `fields`, or (None) of the dataset's only set.

        For computation on the node (encrypted matching, training the matching head); no reply may carry
        them. Raises UnknownDataset, or NotEmbedded when the dataset holds no such set (or, for None, not
        exactly one).
        """
        self.info(name)
        connection = self._read().connection
        if fields is None:
            groups = embedded_field_groups(connection, name)
            if len(groups) != 1:
                raise NotEmbedded(name, held=groups)
            fields = groups[0]
        embeddings = read_embeddings(connection, name, tuple(fields))
        if embeddings is None:
            raise NotEmbedded(name, wanted=tuple(fields), held=embedded_field_groups(connection, name))
        return embeddings

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A write connection for imports and set-up, closed when the block ends."""
        if self._closed:
            raise StoreError(f"the dataset store {self.path} is closed")
        connection = sqlite3.connect(self.path, isolation_level=None)
        try:
            yield connection
        finally:
            connection.close()

    def _read(self) -> _Reader:
        """This thread's read-only connection and its catalog, reloaded when the file changed.

        A node answers catalog calls all day from data that changes only at import, so each thread keeps
        one connection and what it read; `PRAGMA data_version` (a counter SQLite bumps on every commit by
        any other connection or process) says when to read again.
        """
        if self._closed:
            raise StoreError(f"the dataset store {self.path} is closed")
        reader = self._reader
        if reader.connection is None:
            reader.connection = self._open_reader()
        version = reader.connection.execute("PRAGMA data_version").fetchone()[0]
        if version != reader.version:
            connection = reader.connection
            names = [row[0] for row in connection.execute("SELECT name FROM datasets ORDER BY name")]
            reader.catalog = {name: _load_info(connection, name) for name in names}
            reader.descriptions = {}
            reader.version = version
        return reader

    def _open_reader(self) -> sqlite3.Connection:
        # Read-only as defence in depth: a read path cannot write even if a query were wrong.
        connection = sqlite3.connect(
            self.path.resolve().as_uri() + "?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
        with self._readers_lock:
            self._readers.append(connection)
        return connection

    # Last in the class body, so that `list` above still names the built-in type.
    def list(self) -> list[DatasetInfo]:
        """Every dataset held, ordered by name."""
        return list(self._read().catalog.values())


class _Reader(threading.local):
    """Per thread: one read-only connection, the catalog read through it, and descriptions built from it."""

    def __init__(self) -> None:
        self.connection: sqlite3.Connection | None = None
        self.version: int | None = None
        self.catalog: dict[str, DatasetInfo] = {}
        self.descriptions: dict[tuple[str, int, int], DatasetDescription] = {}


def _load_info(connection: sqlite3.Connection, name: str) -> DatasetInfo:
    record = connection.execute(
        "SELECT name, description, source, source_sha256, id_field, row_count, schema_json"
        " FROM datasets WHERE name = ?",
        (name,),
    ).fetchone()
    if record is None:
        raise UnknownDataset(name)
    name, description, source, source_sha256, id_field, row_count, schema_json = record
    # Re-checked on the way out: a tampered database must not smuggle an identifier into SQL.
    schema = tuple(
        FieldSpec(check_identifier("stored field name", field), FieldType(kind))
        for field, kind in json.loads(schema_json)
    )
    check_identifier("stored id field", id_field)
    return DatasetInfo(
        check_dataset_name(name), description, source, source_sha256, id_field, row_count, schema
    )


def _require_str(record_id: object) -> str:
    if not isinstance(record_id, str):
        raise TypeError(f"record ids are strings, got {type(record_id).__name__}: {record_id!r}")
    return record_id

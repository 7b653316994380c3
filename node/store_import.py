"""Turning a CSV into a dataset table: validate, infer types (first pass), then write rows (second pass).

The caller owns the transaction, so a failure anywhere leaves the database as it was.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from node.field_stats import FieldStatistics, compute_statistics
from node.mock_rows import ROW_NUMBER_COLUMN
from node.store_csv import CsvTable
from node.store_errors import InvalidDataset
from node.store_schema import SQL_TYPES, FieldSpec, check_header, check_identifier, convert, infer_types
from node.store_schema import quote_identifier as quote

DATASET_NAME_MAX = 60  # the table is "ds_<name>", and a table name is an identifier of at most 63 characters


def table_name(dataset: str) -> str:
    return f"ds_{dataset}"


def check_dataset_name(name: str) -> str:
    """Return `name` if it can name a dataset (and so, prefixed, a table); raise InvalidDataset."""
    check_identifier("dataset name", name)
    if len(name) > DATASET_NAME_MAX:
        raise InvalidDataset(f"dataset name {name!r} is longer than {DATASET_NAME_MAX} characters")
    return name


@dataclass(frozen=True)
class CsvImport:
    """A CSV checked and typed, ready to be written as dataset `name`."""

    name: str
    csv: CsvTable
    id_field: str
    schema: tuple[FieldSpec, ...]
    sha256: str

    @classmethod
    def prepare(cls, name: str, path: Path, *, id_field: str) -> CsvImport:
        """Check names, header and record ids and infer the column types; raise InvalidDataset."""
        check_dataset_name(name)
        check_identifier("id field", id_field)
        table = CsvTable(path)
        header = check_header(table.header())
        if id_field not in header:
            raise InvalidDataset(f"the id field {id_field!r} is not a column of {path.name}: {header}")
        rows = _rows_with_unique_ids(table, header.index(id_field))
        schema = tuple(infer_types(header, rows, text_fields=[id_field]))
        return cls(name, table, id_field, schema, _sha256_file(path))

    def write(self, connection: sqlite3.Connection) -> tuple[int, tuple[FieldStatistics, ...]]:
        """(Re)create the dataset's table, insert every row, and return (row count, statistics)."""
        table = quote(table_name(self.name))
        columns = ", ".join(
            f"{quote(field.name)} {SQL_TYPES[field.type]}"
            + (" NOT NULL UNIQUE" if field.name == self.id_field else "")
            for field in self.schema
        )
        connection.execute(f"DROP TABLE IF EXISTS {table}")
        connection.execute(f"CREATE TABLE {table} ({ROW_NUMBER_COLUMN} INTEGER PRIMARY KEY, {columns})")
        insert = f"INSERT INTO {table} VALUES ({', '.join('?' * (len(self.schema) + 1))})"  # noqa: S608
        types = [field.type for field in self.schema]
        row_count = 0
        for line, row in self.csv.rows():
            row_count += 1
            try:
                values = [convert(text, kind) for text, kind in zip(row, types, strict=True)]
                connection.execute(insert, (row_count, *values))
            except (ValueError, sqlite3.IntegrityError) as error:
                # The first pass accepted this file: it changed while being imported.
                raise InvalidDataset(
                    f"{self.csv.path.name} line {line} changed during the import ({error})"
                ) from error
        return row_count, compute_statistics(connection, table_name(self.name), self.schema, self.id_field)


def _rows_with_unique_ids(table: CsvTable, id_position: int) -> Iterator[list[str]]:
    first_seen: dict[str, int] = {}
    for line, row in table.rows():
        record_id = row[id_position]
        if not record_id:
            raise InvalidDataset(f"{table.path.name} line {line}: the record id is empty")
        if record_id in first_seen:
            raise InvalidDataset(
                f"{table.path.name} line {line}: record id {record_id!r} is already used on line "
                f"{first_seen[record_id]}"
            )
        first_seen[record_id] = line
        yield row


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

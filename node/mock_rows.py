"""Mock rows for the catalog: synthetic rows that show a dataset's shape without being any real record.

Each field of a mock row is drawn on its own from that field's column (shuffled marginals, the public "mock"
half of a PySyft-style dataset), so missing values and value formats look real while the combination is not.
Guarantee: no mock row equals a real row on the full tuple of non-id fields; a candidate that does is
drawn again, and after MAX_DRAWS_PER_ROW failed draws no more mock rows are made (fewer are shown). The
id of a mock row is never a real record id but "mock-<n>", which marks it as mock wherever it travels.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Sequence

from node.store_schema import FieldSpec, Value, quote_identifier

MOCK_ID_PREFIX = "mock-"
MAX_DRAWS_PER_ROW = 100
ROW_NUMBER_COLUMN = "_row"  # 1..row_count in import order; never a field name (those start with a letter)


def synthesise_mock_rows(
    connection: sqlite3.Connection,
    table: str,
    fields: Sequence[FieldSpec],
    id_field: str,
    row_count: int,
    *,
    count: int,
    seed: int,
) -> tuple[dict[str, Value], ...]:
    """Return up to `count` mock rows (fields in schema order), the same ones for the same seed and data."""
    value_fields = [field.name for field in fields if field.name != id_field]
    if row_count == 0 or not value_fields or count <= 0:
        return ()
    # Not a secret: the generator only has to be repeatable for a given seed.
    rng = random.Random(seed)  # noqa: S311
    quoted_table = quote_identifier(table)
    rows: list[dict[str, Value]] = []
    for _ in range(count):
        for _ in range(MAX_DRAWS_PER_ROW):
            candidate = {name: _draw(connection, quoted_table, name, rng, row_count) for name in value_fields}
            if not _matches_real_row(connection, quoted_table, candidate):
                row: dict[str, Value] = {id_field: f"{MOCK_ID_PREFIX}{len(rows) + 1}"}
                row.update(candidate)
                rows.append({field.name: row[field.name] for field in fields})
                break
        else:
            break  # nearly every combination is a real row here: further rows would fail the same way
    return tuple(rows)


def _draw(
    connection: sqlite3.Connection, quoted_table: str, name: str, rng: random.Random, row_count: int
) -> Value:
    """One value of column `name`, taken from a uniformly chosen row (so missing values keep their rate)."""
    row_number = rng.randint(1, row_count)
    (value,) = connection.execute(
        f"SELECT {quote_identifier(name)} FROM {quoted_table} WHERE {ROW_NUMBER_COLUMN} = ?",  # noqa: S608
        (row_number,),
    ).fetchone()
    return value


def _matches_real_row(connection: sqlite3.Connection, quoted_table: str, candidate: dict[str, Value]) -> bool:
    # IS (not =) so that a missing value matches a missing value.
    condition = " AND ".join(f"{quote_identifier(name)} IS ?" for name in candidate)
    found = connection.execute(
        f"SELECT 1 FROM {quoted_table} WHERE {condition} LIMIT 1",  # noqa: S608
        tuple(candidate.values()),
    ).fetchone()
    return found is not None

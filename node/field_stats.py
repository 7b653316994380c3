"""Per-field statistics of a stored dataset, computed once at import and shown in the catalog.

What is shown is aggregate: counts, distinct counts, k-anonymous ranges and means, mean text length, and for
categorical text the most frequent values, but only values shared by at least K_ANONYMITY_THRESHOLD records.
A range never shows one record's own value: its bounds are the k-th smallest and k-th largest values (so at
least k records lie at or beyond each bound), and it is left out when fewer than 2k values are present.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from node.store_schema import FieldSpec, FieldType, quote_identifier

# A value held by fewer than k records can single out those records (the one Bulgarian filing, a rare
# applicant): the catalog describes the shape of the data, never an individual holder. k = 5 follows the
# usual small-cell suppression rule of statistical disclosure control.
K_ANONYMITY_THRESHOLD = 5
TOP_VALUES_SHOWN = 5
# Text with at most this many distinct values is treated as categorical (jurisdiction, kind, status);
# above it the field is free text (titles, names) and only its mean length is shown.
CATEGORICAL_MAX_DISTINCT = 50

_NUMERIC = (FieldType.INTEGER, FieldType.FLOAT)


@dataclass(frozen=True)
class FieldStatistics:
    """Statistics of one field, named as in the catalog's protobuf message; unused entries are None/empty.

    `min`/`max` (numbers) and `min_text`/`max_text` (dates) are k-anonymous bounds, not the extremes: the
    k-th smallest and k-th largest value (k = K_ANONYMITY_THRESHOLD), None when fewer than 2k are present.
    """

    name: str
    type: FieldType
    non_null: int  # values present (empty CSV cells are missing)
    distinct: int  # distinct values present
    min: float | int | None = None  # numbers: the k-th smallest
    max: float | int | None = None  # numbers: the k-th largest
    mean: float | None = None  # numbers
    min_text: str | None = None  # dates: the k-th earliest, ISO 8601
    max_text: str | None = None  # dates: the k-th latest
    mean_length: float | None = None  # text, in characters
    top_values: tuple[tuple[str, int], ...] = ()  # categorical text; each value held by >= k records

    def to_json(self) -> dict[str, Any]:
        document = {name: getattr(self, name) for name in _JSON_FIELDS}
        document["type"] = self.type.value
        document["top_values"] = [[value, count] for value, count in self.top_values]
        return document

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> FieldStatistics:
        values = {name: document[name] for name in _JSON_FIELDS}
        values["type"] = FieldType(document["type"])
        values["top_values"] = tuple((value, count) for value, count in document["top_values"])
        return cls(**values)


_JSON_FIELDS = tuple(FieldStatistics.__dataclass_fields__)


def compute_statistics(
    connection: sqlite3.Connection, table: str, fields: Sequence[FieldSpec], id_field: str
) -> tuple[FieldStatistics, ...]:
    """Compute every field's statistics from the stored table (identifiers are checked and quoted)."""
    quoted_table = quote_identifier(table)
    return tuple(_field_statistics(connection, quoted_table, field, id_field) for field in fields)


def _field_statistics(
    connection: sqlite3.Connection, quoted_table: str, field: FieldSpec, id_field: str
) -> FieldStatistics:
    column = quote_identifier(field.name)
    # Identifiers are validated and quoted by quote_identifier; no value is ever formatted into SQL.
    non_null, distinct, mean, mean_length = connection.execute(
        f"SELECT COUNT({column}), COUNT(DISTINCT {column}), AVG({column}), AVG(LENGTH({column})) "  # noqa: S608
        f"FROM {quoted_table}"
    ).fetchone()
    minimum = maximum = None
    if field.type in (*_NUMERIC, FieldType.DATE) and non_null >= 2 * K_ANONYMITY_THRESHOLD:
        minimum, maximum = (
            _kth_value(connection, quoted_table, column, descending=descending)
            for descending in (False, True)
        )
    if field.type in _NUMERIC:
        return FieldStatistics(
            field.name, field.type, non_null, distinct, min=minimum, max=maximum, mean=mean
        )
    if field.type is FieldType.DATE:
        return FieldStatistics(field.name, field.type, non_null, distinct, min_text=minimum, max_text=maximum)
    top_values: tuple[tuple[str, int], ...] = ()
    if field.name != id_field and distinct <= CATEGORICAL_MAX_DISTINCT:
        top_values = tuple(
            (value, frequency)
            for value, frequency in connection.execute(
                f"SELECT {column}, COUNT(*) AS frequency FROM {quoted_table} "  # noqa: S608
                f"WHERE {column} IS NOT NULL GROUP BY {column} HAVING frequency >= ? "
                f"ORDER BY frequency DESC, {column} LIMIT ?",
                (K_ANONYMITY_THRESHOLD, TOP_VALUES_SHOWN),
            )
        )
    return FieldStatistics(
        field.name, field.type, non_null, distinct, mean_length=mean_length, top_values=top_values
    )


def _kth_value(
    connection: sqlite3.Connection, quoted_table: str, column: str, *, descending: bool
) -> float | int | str:
    """The k-th smallest (or largest) present value of `column`: a bound that at least k records reach."""
    order = "DESC" if descending else "ASC"
    (value,) = connection.execute(
        f"SELECT {column} FROM {quoted_table} WHERE {column} IS NOT NULL "  # noqa: S608
        f"ORDER BY {column} {order} LIMIT 1 OFFSET ?",
        (K_ANONYMITY_THRESHOLD - 1,),
    ).fetchone()
    return value

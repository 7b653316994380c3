"""Field names, field types and their inference from CSV text, for the dataset store.

Identifiers (dataset and field names) end up inside SQL as quoted identifiers, so they are held to a small
alphabet at import and again whenever they are read back from the database.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from node.store_errors import InvalidDataset

IDENTIFIER = re.compile(r"[a-z][a-z0-9_]{0,62}")

# Leading zeros ("007", "00.5") are not numbers here: identifiers such as serial numbers must keep them.
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

Value = int | float | str | None


class FieldType(StrEnum):
    INTEGER = "int"
    FLOAT = "float"
    DATE = "date"  # stored as ISO 8601 text, so text order is date order
    TEXT = "text"


SQL_TYPES = {
    FieldType.INTEGER: "INTEGER",
    FieldType.FLOAT: "REAL",
    FieldType.DATE: "TEXT",
    FieldType.TEXT: "TEXT",
}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: FieldType


def check_identifier(kind: str, name: str) -> str:
    """Return `name` if it is a safe identifier ([a-z][a-z0-9_]*, at most 63 characters).

    Raises InvalidDataset otherwise (also for a non-string).
    """
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
        raise InvalidDataset(
            f"{kind} {name!r} is not allowed: use lowercase letters, digits and '_', starting with a letter, "
            "at most 63 characters"
        )
    return name


def quote_identifier(name: str) -> str:
    """Double-quote an identifier for SQL; refuses anything `check_identifier` would refuse."""
    check_identifier("identifier", name)
    return '"' + name + '"'


def check_header(header: Iterable[str]) -> list[str]:
    """Validate a CSV header: every name a safe identifier, none repeated. Raise InvalidDataset otherwise."""
    names = list(header)
    if not names:
        raise InvalidDataset("the CSV has no header row")
    for name in names:
        check_identifier("field name", name)
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InvalidDataset(f"field names appear more than once in the header: {repeated}")
    return names


def _is_integer(text: str) -> bool:
    return bool(_INTEGER.fullmatch(text)) and _INT64_MIN <= int(text) <= _INT64_MAX


def _is_float(text: str) -> bool:
    return bool(_DECIMAL.fullmatch(text)) and math.isfinite(float(text))


def _is_date(text: str) -> bool:
    if not _ISO_DATE.fullmatch(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


class TypeInference:
    """Narrows one column's type as values are seen: int ⊂ float; date; text accepts everything.

    Empty cells are missing values and say nothing about the type. A column with no value at all is text.
    """

    def __init__(self) -> None:
        self._candidates = {FieldType.INTEGER, FieldType.FLOAT, FieldType.DATE}

    def observe(self, text: str) -> None:
        if not text or not self._candidates:
            return
        if FieldType.INTEGER in self._candidates and not _is_integer(text):
            self._candidates.discard(FieldType.INTEGER)
        if FieldType.FLOAT in self._candidates and not _is_float(text):
            self._candidates.discard(FieldType.FLOAT)
        if FieldType.DATE in self._candidates and not _is_date(text):
            self._candidates.discard(FieldType.DATE)

    def result(self, *, saw_values: bool) -> FieldType:
        if not saw_values:
            return FieldType.TEXT
        for candidate in (FieldType.INTEGER, FieldType.FLOAT, FieldType.DATE):
            if candidate in self._candidates:
                return candidate
        return FieldType.TEXT


def infer_types(
    header: list[str], rows: Iterable[list[str]], *, text_fields: Iterable[str] = ()
) -> list[FieldSpec]:
    """Infer each column's type from all its values; fields in `text_fields` are text whatever they hold."""
    inferences = [TypeInference() for _ in header]
    saw_values = [False] * len(header)
    for row in rows:
        for position, text in enumerate(row):
            if text:
                saw_values[position] = True
                inferences[position].observe(text)
    forced = set(text_fields)
    return [
        FieldSpec(name, FieldType.TEXT if name in forced else inference.result(saw_values=seen))
        for name, inference, seen in zip(header, inferences, saw_values, strict=True)
    ]


def convert(text: str, field_type: FieldType) -> Value:
    """Turn CSV text into the stored value; the empty string is a missing value (None)."""
    if text == "":
        return None
    if field_type is FieldType.INTEGER:
        return int(text)
    if field_type is FieldType.FLOAT:
        return float(text)
    return text

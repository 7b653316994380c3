"""Read the cells of one Lens patent-family row (`data/lens_drone_families.csv.gz`) the same way everywhere.

The features and the target both need the filing year, the technology field and the `;;`-separated lists, so
the parsing rules live here once. Every reader takes a row as a mapping of column name to string, as
`node.partition.read_rows` gives it; an empty or absent cell means "not known", never an error.

Rules, checked against the shipped table:
- list cells (`applicants`, `priority_numbers`, classes, non-patent citations) are split on `;;`; entries are
  stripped, empty entries dropped and repeats counted once (15 cells repeat an entry);
- dates are ISO (`2015-03-11`); a priority number ends in its date as `YYYYMMDD` (`FR 1051751 A 20100311`),
  and 3 old Canadian ones carry no date;
- the technology field is the IPC subclass (`B64C`), the first 4 characters of a class symbol.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

Row = Mapping[str, str]

LIST_SEPARATOR = ";;"
UNKNOWN_FIELD = "unknown"

_ISO_YEAR = re.compile(r"(\d{4})-\d{2}-\d{2}")
_PRIORITY_DATE = re.compile(r"(\d{4})\d{4}")
_YEAR = re.compile(r"\d{4}")
_SUBCLASS = re.compile(r"[A-HY]\d{2}[A-Z]")  # IPC/CPC subclass; CPC adds section Y (tagging)


def cell(row: Row, column: str) -> str:
    """The stripped text of `column`, or "" when the column is absent or empty."""
    return (row.get(column) or "").strip()


def list_cell(row: Row, column: str) -> list[str]:
    """The distinct entries of a `;;`-separated cell, in first-seen order; [] for an empty cell."""
    seen: dict[str, None] = {}
    for raw in cell(row, column).split(LIST_SEPARATOR):
        entry = raw.strip()
        if entry:
            seen.setdefault(entry, None)
    return list(seen)


def count_cell(row: Row, column: str, *, default: int) -> int:
    """A non-negative integer cell (`simple_family_size`); `default` when empty or not a plain number."""
    text = cell(row, column)
    return int(text) if text.isdigit() else default


def priority_years(row: Row) -> list[int]:
    """The years of the row's priority filings that carry a date (most do; 3 old CA ones do not)."""
    years = []
    for number in list_cell(row, "priority_numbers"):
        match = _PRIORITY_DATE.fullmatch(number.rsplit(" ", 1)[-1])
        if match:
            years.append(int(match.group(1)))
    return years


def priority_offices(row: Row) -> set[str]:
    """The offices (country codes, `EP`, `WO`) where the family's priority filings were made."""
    return {number.split(" ", 1)[0] for number in list_cell(row, "priority_numbers")}


def filing_year(row: Row) -> int | None:
    """The year the application was filed: `application_date`, else the earliest priority, else publication.

    The fallbacks are ordered by how close each is to the filing: a priority filing precedes it by at most a
    year or so under the Paris Convention (the PCT route and continuations stretch this); publication follows
    it by about 18 months. Returns None only when no date at all can be read.
    """
    match = _ISO_YEAR.fullmatch(cell(row, "application_date"))
    if match:
        return int(match.group(1))
    years = priority_years(row)
    if years:
        return min(years)
    year = cell(row, "publication_year")
    return int(year) if _YEAR.fullmatch(year) else None


def technology_field(row: Row) -> str:
    """The IPC subclass of the first IPCR class (`B64C`), else of the first CPC class, else "unknown".

    The first class listed stands for the row's main field; Lens lists IPCR classes for all but 92 rows.
    """
    for column in ("ipcr_classifications", "cpc_classifications"):
        for symbol in list_cell(row, column):
            if _SUBCLASS.match(symbol):
                return symbol[:4]
    return UNKNOWN_FIELD


def subclasses(symbols: list[str]) -> set[str]:
    """The distinct subclasses (first 4 characters) of well-formed class symbols."""
    return {symbol[:4] for symbol in symbols if _SUBCLASS.match(symbol)}

"""Numeric features of one Lens patent-family row, for the valuation model.

What a feature may use: what the record says about the patent itself (family, classes, parties, priorities,
the literature it cites, its age and legal kind). What it may not: `cited_count`, the forward citations,
because the target is built from them (`models.valuation.target`). Nothing here reads that column, and a test
proves the features do not move when it changes. Family sizes also grow after filing, so like the target
they are a snapshot at the export date, not knowledge available on the filing day.

Every feature is a float32 and never NaN or infinite. Heavy-tailed counts are `log1p(count)` (non-patent
citations reach 111 entries on one row; the log keeps such rows from dominating a linear model). A missing
cell takes a documented default: an empty list cell counts 0 entries, an empty family size counts 1 (the
family holds at least this document), an unknown filing year gives age 0, and an empty flag cell
(`has_full_text`, `document_type` with `kind`) gives 0.

Granted: `document_type` is "Granted Patent" or "Ammended Patent" (Lens's spelling); where Lens says
"unknown" or "ambiguous", a kind code starting with B or C (the WIPO ST.16 letters for a granted patent in
most offices) counts as granted. Utility models (`document_type` "Limited Patent", or kind U / Y when Lens
does not know) are flagged apart: they are registered without substantive examination.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from models.valuation.lens_fields import (
    Row,
    cell,
    count_cell,
    filing_year,
    list_cell,
    priority_offices,
    subclasses,
)

# Jurisdictions with their own one-hot column: the five largest in the drones table (US 3,460, WO 808,
# AU 366, CN 355, EP 244); the 29 others (651 rows) share "jurisdiction_other".
MAJOR_JURISDICTIONS: tuple[str, ...] = ("US", "WO", "EP", "CN", "AU")

GRANTED_TYPES = frozenset({"Granted Patent", "Ammended Patent"})
UTILITY_MODEL_TYPES = frozenset({"Limited Patent"})
UNDECIDED_TYPES = frozenset({"", "unknown", "ambiguous"})
GRANTED_KIND_LETTERS = ("B", "C")
UTILITY_MODEL_KIND_LETTERS = ("U", "Y")

# (feature name, list column whose distinct entries are counted), all as log1p(count).
_LIST_COUNTS: tuple[tuple[str, str], ...] = (
    ("log_priority_numbers", "priority_numbers"),
    ("log_cpc_classes", "cpc_classifications"),
    ("log_ipc_classes", "ipcr_classifications"),
    ("log_applicants", "applicants"),
    ("log_inventors", "inventors"),
    ("log_non_patent_citations", "non_patent_citations"),
    ("log_us_classes", "us_classifications"),
)

FEATURE_NAMES: tuple[str, ...] = (
    "log_simple_family_size",
    "log_extended_family_size",
    *(name for name, _ in _LIST_COUNTS),
    "log_priority_offices",  # distinct offices of the priority filings: how many jurisdictions it started in
    "log_cpc_subclasses",  # breadth: distinct 4-character CPC subclasses
    "age_years",
    "granted",
    "utility_model",
    "has_full_text",
    *(f"jurisdiction_{code.lower()}" for code in MAJOR_JURISDICTIONS),
    "jurisdiction_other",
)

_MISSING_FAMILY_SIZE = 1
_INDEX = {name: index for index, name in enumerate(FEATURE_NAMES)}


def extract_features(row: Row, *, reference_year: int) -> np.ndarray:
    """The features of one row, in FEATURE_NAMES order, as float32 (never NaN or inf).

    `reference_year` is the year the age is counted to (the data's snapshot year, e.g. 2017 for the 2016
    drones export); a filing after it gives age 0, not a negative age. Raises TypeError when it is not an int.
    """
    if isinstance(reference_year, bool) or not isinstance(reference_year, int):
        raise TypeError(f"reference_year must be an int year, got {reference_year!r}")
    values = np.zeros(len(FEATURE_NAMES), dtype=np.float32)

    def put(name: str, value: float) -> None:
        values[_INDEX[name]] = value

    put(
        "log_simple_family_size",
        np.log1p(count_cell(row, "simple_family_size", default=_MISSING_FAMILY_SIZE)),
    )
    put(
        "log_extended_family_size",
        np.log1p(count_cell(row, "extended_family_size", default=_MISSING_FAMILY_SIZE)),
    )
    for name, column in _LIST_COUNTS:
        put(name, np.log1p(len(list_cell(row, column))))
    put("log_priority_offices", np.log1p(len(priority_offices(row))))
    put("log_cpc_subclasses", np.log1p(len(subclasses(list_cell(row, "cpc_classifications")))))
    year = filing_year(row)
    put("age_years", 0.0 if year is None else max(0, reference_year - year))
    put("granted", float(is_granted(row)))
    put("utility_model", float(is_utility_model(row)))
    put("has_full_text", float(cell(row, "has_full_text").lower() == "yes"))
    jurisdiction = cell(row, "jurisdiction").upper()
    if jurisdiction in MAJOR_JURISDICTIONS:
        put(f"jurisdiction_{jurisdiction.lower()}", 1.0)
    else:
        put("jurisdiction_other", 1.0)
    return values


def feature_matrix(rows: Iterable[Row], *, reference_year: int) -> np.ndarray:
    """The features of every row, one row each: float32 of shape (len(rows), len(FEATURE_NAMES))."""
    vectors = [extract_features(row, reference_year=reference_year) for row in rows]
    if not vectors:
        return np.zeros((0, len(FEATURE_NAMES)), dtype=np.float32)
    return np.stack(vectors)


def is_granted(row: Row) -> bool:
    """Whether the row is a granted patent (see the module docstring for the rule)."""
    document_type = cell(row, "document_type")
    if document_type in UNDECIDED_TYPES:
        return cell(row, "kind").upper().startswith(GRANTED_KIND_LETTERS)
    return document_type in GRANTED_TYPES


def is_utility_model(row: Row) -> bool:
    """Whether the row is a utility model / limited patent (registered without substantive examination)."""
    document_type = cell(row, "document_type")
    if document_type in UNDECIDED_TYPES:
        return cell(row, "kind").upper().startswith(UTILITY_MODEL_KIND_LETTERS)
    return document_type in UTILITY_MODEL_TYPES

"""Features of the real Lens drone families: shape, no NaN, documented defaults, and no use of the target."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.valuation.features import FEATURE_NAMES, extract_features, feature_matrix
from node.partition import read_rows

LENS_SAMPLE = Path(__file__).resolve().parents[2] / "data" / "lens_drone_families.csv.gz"
REFERENCE_YEAR = 2017  # the drones export holds filings up to 2016-12-31

Rows = list[dict[str, str]]


@pytest.fixture(scope="module")
def rows() -> Rows:
    return read_rows(LENS_SAMPLE)[1]


@pytest.fixture(scope="module")
def matrix(rows: Rows) -> np.ndarray:
    return feature_matrix(rows, reference_year=REFERENCE_YEAR)


def _row(rows: Rows, publication_number: str) -> dict[str, str]:
    (found,) = [row for row in rows if row["publication_number"] == publication_number]
    return found


def _feature(vector: np.ndarray, name: str) -> float:
    return float(vector[FEATURE_NAMES.index(name)])


class _NoCitationsRow(Mapping[str, str]):
    """A row that fails the test if anyone reads its forward citations."""

    def __init__(self, row: Mapping[str, str]) -> None:
        self._row = row

    def __getitem__(self, key: str) -> str:
        if key == "cited_count":
            raise AssertionError("a feature read cited_count, the column the target is built from")
        return self._row[key]

    def __iter__(self) -> Iterator[str]:
        return (key for key in self._row if key != "cited_count")

    def __len__(self) -> int:
        return len(self._row) - 1


def test_names_are_unique_and_match_the_vectors(rows: Rows, matrix: np.ndarray) -> None:
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    vector = extract_features(rows[0], reference_year=REFERENCE_YEAR)
    assert vector.shape == (len(FEATURE_NAMES),)
    assert vector.dtype == np.float32
    assert matrix.shape == (len(rows), len(FEATURE_NAMES)) == (5884, len(FEATURE_NAMES))
    assert matrix.dtype == np.float32
    assert feature_matrix([], reference_year=REFERENCE_YEAR).shape == (0, len(FEATURE_NAMES))


def test_no_nan_or_inf_over_the_whole_table(matrix: np.ndarray) -> None:
    assert np.isfinite(matrix).all()


def test_every_feature_varies_over_the_table(matrix: np.ndarray) -> None:
    constant = [name for name, spread in zip(FEATURE_NAMES, matrix.std(axis=0), strict=True) if spread == 0]
    assert constant == []


def test_exactly_one_jurisdiction_column_is_set(rows: Rows, matrix: np.ndarray) -> None:
    columns = [index for index, name in enumerate(FEATURE_NAMES) if name.startswith("jurisdiction_")]
    assert (matrix[:, columns].sum(axis=1) == 1).all()
    us = FEATURE_NAMES.index("jurisdiction_us")
    assert int(matrix[:, us].sum()) == sum(row["jurisdiction"] == "US" for row in rows) == 3460


def test_a_known_row_gives_the_values_read_off_its_cells(rows: Rows) -> None:
    vector = extract_features(_row(rows, "AT 556755 T"), reference_year=REFERENCE_YEAR)
    expected_counts = {
        "log_simple_family_size": 11,
        "log_extended_family_size": 13,
        "log_priority_numbers": 2,  # FR 1051751 A 20100311;;FR 1054449 A 20100607
        "log_priority_offices": 1,  # both FR
        "log_cpc_classes": 8,
        "log_cpc_subclasses": 5,  # A63H, A63F, G05D, G06F, G08C
        "log_ipc_classes": 6,
        "log_applicants": 1,
        "log_inventors": 2,
        "log_non_patent_citations": 0,
        "log_us_classes": 0,
    }
    for name, count in expected_counts.items():
        assert _feature(vector, name) == pytest.approx(math.log1p(count)), name
    assert _feature(vector, "age_years") == 2017 - 2011  # application_date 2011-02-03
    assert _feature(vector, "granted") == 0  # kind T, document type unknown
    assert _feature(vector, "has_full_text") == 0
    assert _feature(vector, "jurisdiction_other") == 1


def test_repeated_entries_count_once(rows: Rows) -> None:
    row = dict(_row(rows, "AT 556755 T"))
    base = extract_features(row, reference_year=REFERENCE_YEAR)
    row["applicants"] = "PARROT;; PARROT ;;;;"
    assert _feature(extract_features(row, reference_year=REFERENCE_YEAR), "log_applicants") == _feature(
        base, "log_applicants"
    )


def test_age_falls_back_to_priority_then_publication_year(rows: Rows) -> None:
    row = dict(_row(rows, "AT 556755 T"))
    row["application_date"] = ""
    assert _feature(extract_features(row, reference_year=REFERENCE_YEAR), "age_years") == 2017 - 2010
    # A real row with neither an application date nor a dated priority: its publication year (1968) counts.
    old = _row(rows, "CA 783996 A")
    assert (old["application_date"], old["priority_numbers"]) == ("", "CA 783996T A")
    assert _feature(extract_features(old, reference_year=REFERENCE_YEAR), "age_years") == 2017 - 1968


def test_age_is_never_negative(rows: Rows) -> None:
    vector = extract_features(_row(rows, "AT 556755 T"), reference_year=2000)
    assert _feature(vector, "age_years") == 0


def test_an_empty_row_takes_the_documented_defaults() -> None:
    vector = extract_features({}, reference_year=REFERENCE_YEAR)
    assert np.isfinite(vector).all()
    for name in ("log_simple_family_size", "log_extended_family_size"):
        assert _feature(vector, name) == pytest.approx(math.log1p(1))
    others = {"log_simple_family_size", "log_extended_family_size", "jurisdiction_other"}
    assert all(_feature(vector, name) == 0 for name in FEATURE_NAMES if name not in others)
    assert _feature(vector, "jurisdiction_other") == 1


@pytest.mark.parametrize(
    ("document_type", "kind", "granted", "utility_model"),
    [
        ("Granted Patent", "A", True, False),  # a pre-2001 US grant is kind A
        ("Patent Application", "A1", False, False),
        ("Limited Patent", "U", False, True),
        ("Ammended Patent", "B8", True, False),
        ("unknown", "C1", True, False),
        ("unknown", "A1", False, False),
        ("ambiguous", "Y1", False, True),
        ("Search report", "A3", False, False),
        ("Design right", "S1", False, False),
    ],
)
def test_granted_and_utility_model_flags(
    document_type: str, kind: str, granted: bool, utility_model: bool
) -> None:
    vector = extract_features({"document_type": document_type, "kind": kind}, reference_year=REFERENCE_YEAR)
    assert _feature(vector, "granted") == float(granted)
    assert _feature(vector, "utility_model") == float(utility_model)


def test_reference_year_must_be_an_int(rows: Rows) -> None:
    for bad in (2017.0, "2017", True):
        with pytest.raises(TypeError, match="reference_year"):
            extract_features(rows[0], reference_year=bad)  # type: ignore[arg-type]


def test_no_feature_reads_cited_count(rows: Rows, matrix: np.ndarray) -> None:
    guarded = [_NoCitationsRow(row) for row in rows]
    np.testing.assert_array_equal(feature_matrix(guarded, reference_year=REFERENCE_YEAR), matrix)


@settings(max_examples=40)
@given(data=st.data())
def test_perturbing_cited_count_leaves_features_unchanged(rows: Rows, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(rows) - 1), label="row")
    cited = data.draw(st.one_of(st.integers(0, 10**6).map(str), st.sampled_from(["", "x", "-1"])))
    changed = {**rows[index], "cited_count": cited}
    np.testing.assert_array_equal(
        extract_features(changed, reference_year=REFERENCE_YEAR),
        extract_features(rows[index], reference_year=REFERENCE_YEAR),
    )


def test_shuffling_cited_count_over_the_table_leaves_the_matrix_unchanged(
    rows: Rows, matrix: np.ndarray
) -> None:
    shuffled = np.random.default_rng(7).permutation([row["cited_count"] for row in rows])
    changed = [{**row, "cited_count": str(cited)} for row, cited in zip(rows, shuffled, strict=True)]
    assert any(a["cited_count"] != b["cited_count"] for a, b in zip(rows, changed, strict=True))
    np.testing.assert_array_equal(feature_matrix(changed, reference_year=REFERENCE_YEAR), matrix)

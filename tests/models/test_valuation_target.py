"""The cohort-normalised citation target on the real Lens drone families, and a check that it is learnable."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from functools import reduce
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.valuation.features import FEATURE_NAMES, feature_matrix
from models.valuation.target import (
    CohortStats,
    cohort_mean,
    cohort_of,
    cohort_stats,
    filing_year,
    merge,
    normalised_target,
    normalised_targets,
    technology_field,
)
from node.partition import partition_by_jurisdiction, read_rows

LENS_SAMPLE = Path(__file__).resolve().parents[2] / "data" / "lens_drone_families.csv.gz"
REFERENCE_YEAR = 2017

Rows = list[dict[str, str]]


@pytest.fixture(scope="module")
def rows() -> Rows:
    return read_rows(LENS_SAMPLE)[1]


@pytest.fixture(scope="module")
def stats(rows: Rows) -> CohortStats:
    return cohort_stats(rows)


def _row(rows: Rows, publication_number: str) -> dict[str, str]:
    (found,) = [row for row in rows if row["publication_number"] == publication_number]
    return found


def _mean_cited(rows: Rows) -> float:
    return sum(int(row["cited_count"]) for row in rows) / len(rows)


# --- fields and years ---------------------------------------------------------------------------------


def test_technology_field_is_the_ipc_subclass_then_cpc_then_unknown(rows: Rows) -> None:
    assert (
        technology_field({"ipcr_classifications": "B64C39/02;;G05D1/00", "cpc_classifications": "H04N7/18"})
        == "B64C"
    )
    assert technology_field({"ipcr_classifications": "", "cpc_classifications": "H04N7/18"}) == "H04N"
    assert technology_field({}) == "unknown"
    # 92 rows have no IPCR class; 41 of them have no CPC class either.
    assert Counter(technology_field(row) for row in rows)["unknown"] == 41
    assert Counter(technology_field(row) for row in rows).most_common(1) == [("B64C", 485 + 1)]  # 1 by CPC


def test_filing_year_prefers_the_application_date(rows: Rows) -> None:
    row = _row(rows, "AT 556755 T")
    assert filing_year(row) == 2011
    assert filing_year({**row, "application_date": ""}) == 2010  # earliest priority, FR ... 20100311
    assert filing_year(_row(rows, "CA 783996 A")) == 1968  # undated priority: publication year
    assert filing_year({}) is None
    with pytest.raises(ValueError, match="no application, priority or publication date"):
        cohort_of({"publication_number": "XX 1"})


# --- stats and merging --------------------------------------------------------------------------------


def test_stats_count_every_row_and_citation(rows: Rows, stats: CohortStats) -> None:
    assert stats.row_count == len(rows)
    assert stats.total("global", None).cited_sum == sum(int(row["cited_count"]) for row in rows)
    b64c_2014 = [row for row in rows if cohort_of(row) == ("B64C", 2014)]
    assert stats.totals["B64C", 2014] == (len(b64c_2014), sum(int(row["cited_count"]) for row in b64c_2014))


@pytest.mark.parametrize("n_providers", [2, 3, 5])
def test_merging_the_jurisdiction_partitions_gives_the_stats_of_the_table(
    rows: Rows, stats: CohortStats, n_providers: int
) -> None:
    shares = [cohort_stats(part.rows) for part in partition_by_jurisdiction(rows, n_providers)]
    assert reduce(merge, shares, CohortStats.empty()) == stats
    assert reduce(merge, reversed(shares)) == stats


@settings(max_examples=25)
@given(seed=st.integers(0, 2**32 - 1), parts=st.integers(1, 7))
def test_merging_random_partitions_gives_the_stats_of_the_union(
    rows: Rows, stats: CohortStats, seed: int, parts: int
) -> None:
    rng = np.random.default_rng(seed)
    owner = rng.integers(0, parts, size=len(rows))
    shares = [
        cohort_stats([row for row, who in zip(rows, owner, strict=True) if who == part])
        for part in range(parts)
    ]
    order = rng.permutation(parts)
    assert reduce(merge, (shares[i] for i in order), CohortStats.empty()) == stats


@settings(max_examples=25)
@given(seed=st.integers(0, 2**32 - 1))
def test_merge_is_associative_and_commutative_with_empty_as_identity(rows: Rows, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b, c = (
        cohort_stats([rows[i] for i in rng.choice(len(rows), size=200, replace=False)]) for _ in range(3)
    )
    assert merge(merge(a, b), c) == merge(a, merge(b, c))
    assert merge(a, b) == merge(b, a)
    assert merge(a, CohortStats.empty()) == a == merge(CohortStats.empty(), a)
    assert merge(a, b) != a  # 200 rows drawn from 5,884 always add something


def test_targets_from_merged_node_stats_equal_the_pooled_targets(rows: Rows, stats: CohortStats) -> None:
    partitions = partition_by_jurisdiction(rows, 3)
    merged = reduce(merge, (cohort_stats(part.rows) for part in partitions))
    for part in partitions:  # each node scores only its own rows against the merged stats
        np.testing.assert_array_equal(
            normalised_targets(part.rows, merged), normalised_targets(part.rows, stats)
        )


# --- the target -----------------------------------------------------------------------------------------


def test_uncited_patents_score_zero(rows: Rows, stats: CohortStats) -> None:
    targets = normalised_targets(rows, stats)
    uncited = np.array([row["cited_count"] == "0" for row in rows])
    assert uncited.sum() == 3203
    assert (targets[uncited] == 0).all()
    assert (targets[~uncited] > 0).all()
    assert np.isfinite(targets).all()


def test_target_increases_with_citations_within_a_cohort(rows: Rows, stats: CohortStats) -> None:
    row = next(row for row in rows if cohort_of(row) == ("B64C", 2014))
    members = [other for other in rows if cohort_of(other) == ("B64C", 2014)]
    cohort = cohort_mean(cohort_of(row), stats)
    assert cohort.level == "field-year"
    assert cohort.count == len(members) == 91
    assert cohort.mean == pytest.approx(_mean_cited(members))
    scores = [normalised_target({**row, "cited_count": str(cited)}, stats) for cited in range(60)]
    assert scores[0] == 0
    assert all(later > earlier for earlier, later in itertools.pairwise(scores))
    assert scores[1] == pytest.approx(math.log1p(1 / _mean_cited(members)))


def test_a_tiny_cohort_falls_back_to_section_and_year(rows: Rows, stats: CohortStats) -> None:
    row = _row(rows, "AT 399980 B")  # A01K in 1985: 4 rows, fewer than min_cohort = 5
    assert cohort_of(row) == ("A01K", 1985)
    assert stats.totals["A01K", 1985].count == 4
    section = [other for other in rows if cohort_of(other)[1] == 1985 and cohort_of(other)[0].startswith("A")]
    assert cohort_mean(cohort_of(row), stats) == (
        "section-year",
        ("A", 1985),
        len(section),
        _mean_cited(section),
    )
    assert normalised_target(row, stats) == pytest.approx(
        math.log1p(int(row["cited_count"]) / _mean_cited(section))
    )
    # With min_cohort 4 the row's own cohort is big enough.
    field = [other for other in rows if cohort_of(other) == ("A01K", 1985)]
    assert cohort_mean(cohort_of(row), stats, min_cohort=4).level == "field-year"
    assert normalised_target(row, stats, min_cohort=4) == pytest.approx(
        math.log1p(int(row["cited_count"]) / _mean_cited(field))
    )


def test_fallback_reaches_the_year_and_the_whole_table(rows: Rows, stats: CohortStats) -> None:
    lonely = {"ipcr_classifications": "Z99Z1/00", "application_date": "2014-05-01", "cited_count": "3"}
    assert cohort_mean(cohort_of(lonely), stats).level == "year"  # an unseen field in a populous year
    year = [row for row in rows if filing_year(row) == 2014]
    assert normalised_target(lonely, stats) == pytest.approx(math.log1p(3 / _mean_cited(year)))
    ancient = {**lonely, "application_date": "1850-01-01"}  # no patent filed that year
    assert cohort_mean(cohort_of(ancient), stats).level == "global"
    assert normalised_target(ancient, stats) == pytest.approx(math.log1p(3 / _mean_cited(rows)))


def test_an_uncited_cohort_gives_no_scale_and_is_skipped(rows: Rows) -> None:
    cited = {"ipcr_classifications": "B64C1/00", "application_date": "2014-01-01", "cited_count": "4"}
    uncited = [{**cited, "cited_count": "0"} for _ in range(6)]
    others = [{**cited, "ipcr_classifications": "B64D1/00", "cited_count": "2"} for _ in range(6)]
    stats = cohort_stats(uncited + others)
    assert cohort_mean(cohort_of(cited), stats).level == "section-year"  # B64C 2014 holds 6 but no citation
    assert normalised_target(cited, stats) == pytest.approx(math.log1p(4 / 1.0))
    assert normalised_target(uncited[0], stats) == 0


def test_zero_citation_rule_when_nothing_is_cited_at_all() -> None:
    row = {"ipcr_classifications": "B64C1/00", "application_date": "2014-01-01", "cited_count": "0"}
    stats = cohort_stats([row] * 10)
    assert cohort_mean(cohort_of(row), stats).mean == 0
    assert normalised_target(row, stats) == 0
    with pytest.raises(ValueError, match="no citation at all"):
        normalised_target({**row, "cited_count": "2"}, stats)


@pytest.mark.parametrize("cited", ["", "-1", "3.5", "many"])
def test_an_unusable_citation_count_is_refused(rows: Rows, cited: str) -> None:
    with pytest.raises(ValueError, match="cited_count"):
        cohort_stats([{**rows[0], "cited_count": cited}])


def test_empty_stats_and_bad_min_cohort_are_refused(rows: Rows, stats: CohortStats) -> None:
    with pytest.raises(ValueError, match="no rows"):
        normalised_target(rows[0], CohortStats.empty())
    for bad in (0, -1, True):
        with pytest.raises(ValueError, match="min_cohort"):
            normalised_target(rows[0], stats, min_cohort=bad)


# --- signal: can the features predict the target? -----------------------------------------------------


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank (as Spearman's rho needs)."""
    order = np.argsort(values, kind="stable")
    positions = np.empty(len(values))
    positions[order] = np.arange(1, len(values) + 1)
    _, group = np.unique(values, return_inverse=True)
    return (np.bincount(group, positions) / np.bincount(group))[group]


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


def _ridge_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, alpha: float) -> np.ndarray:
    """Closed-form ridge on standardised features, unpenalised intercept."""
    centre, scale = x_train.mean(axis=0), x_train.std(axis=0)
    scale[scale == 0] = 1.0
    z_train, z_test = (x_train - centre) / scale, (x_test - centre) / scale
    offset = y_train.mean()
    weights = np.linalg.solve(
        z_train.T @ z_train + alpha * np.eye(z_train.shape[1]), z_train.T @ (y_train - offset)
    )
    return z_test @ weights + offset


def test_spearman_ranks_ties_by_their_mean() -> None:
    np.testing.assert_array_equal(_ranks(np.array([10.0, 20.0, 20.0, 30.0, 0.0])), [2, 3.5, 3.5, 5, 1])
    assert _spearman(np.array([1.0, 2, 3, 4]), np.array([10.0, 20, 30, 40])) == pytest.approx(1)
    assert _spearman(np.array([1.0, 2, 3, 4]), np.array([4.0, 3, 2, 1])) == pytest.approx(-1)


def test_ridge_on_the_features_ranks_held_out_targets(rows: Rows) -> None:
    rng = np.random.default_rng(20240601)
    order = rng.permutation(len(rows))
    cut = int(0.8 * len(rows))
    train, test = order[:cut], order[cut:]
    # The target's cohort means come from the training rows only: nothing about the held-out citations leaks.
    stats = cohort_stats([rows[i] for i in train])
    targets = normalised_targets(rows, stats)
    features = feature_matrix(rows, reference_year=REFERENCE_YEAR).astype(np.float64)

    predicted = _ridge_predict(features[train], targets[train], features[test], alpha=1.0)
    spearman = _spearman(predicted, targets[test])
    r2 = 1 - ((targets[test] - predicted) ** 2).sum() / ((targets[test] - targets[test].mean()) ** 2).sum()
    age = [FEATURE_NAMES.index("age_years")]
    age_only = _spearman(
        _ridge_predict(features[train][:, age], targets[train], features[test][:, age], 1.0), targets[test]
    )
    print(f"held-out Spearman {spearman:.3f}, R^2 {r2:.3f}; age alone: Spearman {age_only:.3f}")

    assert spearman > 0.4
    assert r2 > 0.1
    # Age alone already ranks the target (young cohorts are mostly uncited): the rest must add to it.
    assert spearman > age_only + 0.1

"""The valuation target: forward citations relative to the patent's technology-field x filing-year cohort.

What it means. `log(1 + cited / cohort_mean)`, where `cited` is the row's forward citations (`cited_count`)
and `cohort_mean` the mean forward citations of the patents filed in the same IPC subclass (`B64C`) and the
same year. It is the relative citation impact used by the OECD patent-quality indicators (citations are
compared only within a field and year, because fields cite at different rates and older patents have had
longer to be cited). 0 means uncited; log 2 ~ 0.69 means cited as often as the cohort's average patent; each
further +0.69 roughly doubles the ratio. The log tames the heavy tail (one row here has 1,365 citations).

What it does NOT mean.
- It is not a monetary value, a licence price or a validity opinion; citations correlate with value on
  average, and are a weak signal for any single patent.
- Citations lag: a patent filed in the last few years of the export (the drones table runs to 2016) has had
  little time to be cited. Comparing within a filing year puts the cohort means on one scale, but not the
  shape: in the young cohorts most patents are still uncited (91% of the 2015 filings here, against under
  30% before 2008), so their targets are mostly 0 with a few large values, and the target's spread still
  depends on age. A young cohort's mean also rests on very few citations, so its targets are noisy.
- The cohorts are those of this sample, not of the whole field: the drones table is a keyword-selected set of
  5,884 families, so "the B64C patents of 2014" means those the keyword search found, and the ranking is
  relative to them only.

Cohorts too small to give a stable mean fall back, in order, to (IPC section, filing year), to the filing
year, and to the whole table; see `cohort_mean`.

Federated use. Nodes cannot pool rows, so the target is computed from per-cohort integer totals (count and
sum of citations): each node runs `cohort_stats` on its own rows, a secure aggregate of those totals gives
what `merge` gives in the clear, and each node then scores its own rows against the merged stats. Under
secure aggregation the cohort keys would be fixed in advance (all subclasses x years), so that the set of
keys does not reveal which cohorts a node holds; `CohortStats` itself does not hide them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import NamedTuple

import numpy as np

from models.valuation.lens_fields import UNKNOWN_FIELD, Row, cell, filing_year, technology_field

__all__ = [
    "CohortMean",
    "CohortStats",
    "CohortTotal",
    "cited_count",
    "cohort_mean",
    "cohort_of",
    "cohort_stats",
    "filing_year",
    "merge",
    "normalised_target",
    "normalised_targets",
    "technology_field",
]

Cohort = tuple[str, int]  # (technology field, filing year)
LEVELS = ("field-year", "section-year", "year", "global")


class CohortTotal(NamedTuple):
    """How many patents a cohort holds and how many forward citations they have in all."""

    count: int
    cited_sum: int

    def __add__(self, other: object) -> CohortTotal:  # sums, not tuple concatenation
        if not isinstance(other, CohortTotal):
            return NotImplemented
        return CohortTotal(self.count + other.count, self.cited_sum + other.cited_sum)


_ZERO = CohortTotal(0, 0)


@dataclass(frozen=True)
class CohortStats:
    """Per (field, filing year) cohort totals; treat as immutable. Equal stats compare equal."""

    totals: Mapping[Cohort, CohortTotal] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> CohortStats:
        """The stats of no rows: the identity of `merge`."""
        return cls({})

    @cached_property
    def _rollups(self) -> dict[tuple[str, object], CohortTotal]:
        # The coarser levels are sums of the field-year totals, so only those need to travel between nodes.
        rollups: dict[tuple[str, object], CohortTotal] = defaultdict(lambda: _ZERO)
        for (technology, year), total in self.totals.items():
            rollups["field-year", (technology, year)] += total
            rollups["section-year", (_section(technology), year)] += total
            rollups["year", year] += total
            rollups["global", None] += total
        return dict(rollups)

    def total(self, level: str, key: object) -> CohortTotal:
        """The totals of one cohort at `level` (see LEVELS); zero for a cohort no row falls in."""
        return self._rollups.get((level, key), _ZERO)

    @property
    def row_count(self) -> int:
        return self.total("global", None).count


class CohortMean(NamedTuple):
    """The cohort a row is compared with: its level, key, size and mean forward citations."""

    level: str
    key: object
    count: int
    mean: float


def cited_count(row: Row) -> int:
    """The row's forward citations. Raises ValueError when the cell is not a non-negative integer."""
    text = cell(row, "cited_count")
    if not text.isdigit():
        raise ValueError(
            f"row {cell(row, 'publication_number') or '?'} has no usable cited_count "
            f"(got {text!r}); the target needs a non-negative integer"
        )
    return int(text)


def cohort_of(row: Row) -> Cohort:
    """The row's (technology field, filing year). Raises ValueError when no date in the row gives a year."""
    year = filing_year(row)
    if year is None:
        raise ValueError(
            f"row {cell(row, 'publication_number') or '?'} has no application, priority or publication date, "
            "so it belongs to no filing-year cohort"
        )
    return technology_field(row), year


def cohort_stats(rows: Iterable[Row]) -> CohortStats:
    """Count the rows and sum their forward citations per cohort.

    Raises ValueError for a row without a filing year or a usable `cited_count` (see `cohort_of`,
    `cited_count`).
    """
    totals: dict[Cohort, CohortTotal] = defaultdict(lambda: _ZERO)
    for row in rows:
        totals[cohort_of(row)] += CohortTotal(1, cited_count(row))
    return CohortStats(dict(totals))


def merge(stats_a: CohortStats, stats_b: CohortStats) -> CohortStats:
    """The stats of both sets of rows together: cohort-wise sums.

    Associative and commutative, with `CohortStats.empty()` as identity, so any order of adding nodes' stats
    (a secure aggregate included) gives the stats of the union of their rows.
    """
    totals = dict(stats_a.totals)
    for cohort, total in stats_b.totals.items():
        totals[cohort] = totals.get(cohort, _ZERO) + total
    return CohortStats(totals)


def cohort_mean(cohort: Cohort, stats: CohortStats, *, min_cohort: int = 5) -> CohortMean:
    """The finest cohort of `cohort` that holds at least `min_cohort` patents and at least one citation.

    Levels, finest first: (field, year), (section, year), (year), then the whole table whatever its size.
    A cohort in which no patent is cited gives no scale to compare with, so it is skipped like a small one
    (a row inside its own cohort never meets this: its own citations make the sum positive). If even the
    whole table holds no citation, the global level is returned with mean 0.
    Raises ValueError when `min_cohort` is not a positive int or `stats` hold no rows.
    """
    if isinstance(min_cohort, bool) or not isinstance(min_cohort, int) or min_cohort < 1:
        raise ValueError(f"min_cohort must be a positive integer, got {min_cohort!r}")
    if stats.row_count == 0:
        raise ValueError("the cohort stats hold no rows: there is no mean to normalise against")
    technology, year = cohort
    candidates = (
        ("field-year", (technology, year)),
        ("section-year", (_section(technology), year)),
        ("year", year),
    )
    for level, key in candidates:
        total = stats.total(level, key)
        if total.count >= min_cohort and total.cited_sum > 0:
            return CohortMean(level, key, total.count, total.cited_sum / total.count)
    total = stats.total("global", None)
    return CohortMean("global", None, total.count, total.cited_sum / total.count)


def normalised_target(row: Row, stats: CohortStats, *, min_cohort: int = 5) -> float:
    """`log(1 + cited / cohort_mean)` for the row, against `stats` (normally including the row itself).

    Zero rule: an uncited row scores 0 whatever its cohort, including a cohort (or table) whose mean is 0.
    Raises ValueError for a bad row (see `cohort_of`, `cited_count`), empty stats, or a cited row scored
    against stats that hold no citation at all (its ratio would be infinite).
    """
    cited = cited_count(row)
    reference = cohort_mean(cohort_of(row), stats, min_cohort=min_cohort)
    if cited == 0:
        return 0.0
    if reference.mean == 0:
        raise ValueError(
            f"row {cell(row, 'publication_number') or '?'} is cited {cited} times but the stats hold no "
            "citation at all: its relative impact is undefined"
        )
    return math.log1p(cited / reference.mean)


def normalised_targets(rows: Iterable[Row], stats: CohortStats, *, min_cohort: int = 5) -> np.ndarray:
    """`normalised_target` of every row, as a float64 vector."""
    return np.array([normalised_target(row, stats, min_cohort=min_cohort) for row in rows], dtype=np.float64)


def _section(technology: str) -> str:
    """The IPC section (first letter) of a subclass; the unknown field is its own section."""
    return UNKNOWN_FIELD if technology == UNKNOWN_FIELD else technology[:1]

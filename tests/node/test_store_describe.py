"""The node's dataset store, described: schema, k-anonymous statistics and mock rows."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from node.field_stats import K_ANONYMITY_THRESHOLD
from node.store import DatasetStore, FieldType
from tests.node._store_helpers import ID, import_dataset, write_csv


def _as_csv_text(value: object) -> str:
    return "" if value is None else str(value)


# -- statistics ----------------------------------------------------------------------------------------------


def test_hand_made_lens_rows_have_the_hand_computed_schema_and_statistics(hand_made: DatasetStore) -> None:
    description = hand_made.describe("lens_rows")
    info = description.info
    stats = {entry.name: entry for entry in description.statistics}

    assert info.row_count == 8
    assert info.id_field == ID
    assert info.source == "Lens.org (test)"
    assert {field.name: field.type for field in info.schema} == {
        "publication_number": FieldType.TEXT,
        "jurisdiction": FieldType.TEXT,
        "kind": FieldType.TEXT,
        "publication_date": FieldType.DATE,
        "publication_year": FieldType.INTEGER,
        "title": FieldType.TEXT,
        "applicants": FieldType.TEXT,
        "cited_count": FieldType.INTEGER,
        "simple_family_size": FieldType.INTEGER,
    }
    # Eight values are fewer than 2k: no range is shown, since any bound would be some record's own value.
    cited = stats["cited_count"]
    assert (cited.non_null, cited.distinct, cited.min, cited.max, cited.mean) == (8, 5, None, None, 2.0)
    family = stats["simple_family_size"]
    assert (family.min, family.max, family.mean, family.distinct) == (None, None, 1.75, 3)
    year = stats["publication_year"]
    assert (year.min, year.max, year.mean) == (None, None, 2006.625)
    date = stats["publication_date"]
    assert (date.min_text, date.max_text, date.distinct, date.min) == (None, None, 5, None)
    assert stats["applicants"].non_null == 7  # one empty cell is a missing value
    assert stats["title"].mean_length == 50.0
    assert stats[ID].distinct == 8 and stats[ID].top_values == ()


def test_top_values_show_only_values_held_by_at_least_k_rows(hand_made: DatasetStore) -> None:
    stats = {entry.name: entry for entry in hand_made.describe("lens_rows").statistics}

    assert stats["jurisdiction"].top_values == (("US", 6),)  # EP and CN (one row each) stay hidden
    assert stats["kind"].top_values == (("A1", 6),)
    assert stats["applicants"].top_values == ()  # every applicant is rare


def test_k_threshold_boundary(store: DatasetStore, tmp_path: Path) -> None:
    k = K_ANONYMITY_THRESHOLD
    lines = ["id,status"] + [f"{i},issued" for i in range(k)] + [f"{k + i},pending" for i in range(k - 1)]
    import_dataset(store, "boundary", write_csv(tmp_path / "b.csv", "\n".join(lines) + "\n"), id_field="id")

    (_, status) = store.describe("boundary").statistics
    assert status.top_values == (("issued", k),)


@pytest.mark.parametrize(
    ("present", "bounds"), [(2 * K_ANONYMITY_THRESHOLD, True), (2 * K_ANONYMITY_THRESHOLD - 1, False)]
)
def test_ranges_are_k_anonymous_bounds_and_need_2k_values(
    store: DatasetStore, tmp_path: Path, present: int, bounds: bool
) -> None:
    k = K_ANONYMITY_THRESHOLD
    # Values 10, 20, ... (one per record) and days 1, 2, ... of March; one record has neither.
    lines = (
        ["id,score,filed"] + [f"r{i},{10 * (i + 1)},2020-03-{i + 1:02d}" for i in range(present)] + ["x,,"]
    )
    import_dataset(store, "ranges", write_csv(tmp_path / "r.csv", "\n".join(lines) + "\n"), id_field="id")
    _, score, filed = store.describe("ranges").statistics

    assert (score.non_null, filed.non_null) == (present, present)
    if bounds:
        assert (score.min, score.max) == (10 * k, 10 * (present - k + 1))
        assert (filed.min_text, filed.max_text) == (f"2020-03-{k:02d}", f"2020-03-{present - k + 1:02d}")
    else:
        assert (score.min, score.max, filed.min_text, filed.max_text) == (None, None, None, None)
    assert score.mean == pytest.approx(5 * (present + 1))


def test_real_lens_partition_statistics_match_the_rows(lens_partition: tuple[DatasetStore, list]) -> None:
    store, rows = lens_partition
    description = store.describe("lens_families")
    stats = {entry.name: entry for entry in description.statistics}
    cited = [int(row["cited_count"]) for row in rows]
    jurisdictions = Counter(row["jurisdiction"] for row in rows)

    assert description.info.row_count == len(rows) > 500
    assert [info.name for info in store.list()] == ["lens_families"]
    assert stats[ID].distinct == stats[ID].non_null == len(rows)
    k = K_ANONYMITY_THRESHOLD
    # k-anonymous bounds: the k-th smallest and k-th largest, never the one most cited record's count
    assert (stats["cited_count"].min, stats["cited_count"].max) == (sorted(cited)[k - 1], sorted(cited)[-k])
    assert stats["cited_count"].max < max(cited)
    assert stats["cited_count"].mean == pytest.approx(sum(cited) / len(cited))
    assert stats["publication_year"].min <= stats["publication_year"].mean <= stats["publication_year"].max
    dates = sorted(row["publication_date"] for row in rows)
    assert (stats["publication_date"].min_text, stats["publication_date"].max_text) == (
        dates[k - 1],
        dates[-k],
    )
    assert stats["non_patent_citations"].non_null == sum(1 for row in rows if row["non_patent_citations"])
    shown = dict(stats["jurisdiction"].top_values)
    assert shown == {code: n for code, n in jurisdictions.most_common(5) if n >= K_ANONYMITY_THRESHOLD}
    assert "IL" not in shown  # 3 Israeli filings: below k
    assert stats["title"].top_values == ()  # free text


# -- mock rows -----------------------------------------------------------------------------------------------


def test_mock_rows_are_never_real_rows(lens_partition: tuple[DatasetStore, list]) -> None:
    store, rows = lens_partition
    description = store.describe("lens_families", seed=3)
    fields = description.info.fields
    value_fields = [field for field in fields if field != ID]
    real_tuples = {tuple(row[field] for field in value_fields) for row in rows}
    real_ids = {row[ID] for row in rows}

    assert len(description.mock_rows) == 20
    for row in description.mock_rows:
        assert list(row) == list(fields)
        assert row[ID].startswith("mock-") and row[ID] not in real_ids
        assert tuple(_as_csv_text(row[field]) for field in value_fields) not in real_tuples
        for field in value_fields:  # a real value only if k records share it (see test_mock_rows.py)
            held_by = sum(1 for real in rows if real[field] == _as_csv_text(row[field]))
            assert row[field] is None or held_by == 0 or held_by >= K_ANONYMITY_THRESHOLD


def test_mock_rows_are_deterministic_given_a_seed(lens_partition: tuple[DatasetStore, list]) -> None:
    store, _ = lens_partition
    first = store.describe("lens_families", seed=11).mock_rows
    assert store.describe("lens_families", seed=11).mock_rows == first
    assert store.describe("lens_families", seed=12).mock_rows != first
    assert len(store.describe("lens_families", mock_rows=500).mock_rows) == 20  # never more than 20


def test_mock_rows_are_redrawn_until_not_real(store: DatasetStore, tmp_path: Path) -> None:
    # k records (a, x) and k records (b, y): every value may be shown (k records hold it), but only two
    # combinations are not real rows, (a, y) and (b, x); every mock row must be one of them.
    k = K_ANONYMITY_THRESHOLD
    lines = ["id,left,right"] + [f"{i},a,x" for i in range(k)] + [f"{k + i},b,y" for i in range(k)]
    import_dataset(store, "pairs", write_csv(tmp_path / "p.csv", "\n".join(lines) + "\n"), id_field="id")
    mock = store.describe("pairs", seed=5).mock_rows
    assert len(mock) == 20
    assert {(row["left"], row["right"]) for row in mock} <= {("a", "y"), ("b", "x")}


def test_no_mock_rows_when_every_combination_is_real(store: DatasetStore, tmp_path: Path) -> None:
    # One value held by k records: it may be shown, but the only row it makes is real.
    lines = ["id,status"] + [f"{i},open" for i in range(K_ANONYMITY_THRESHOLD)]
    import_dataset(store, "single", write_csv(tmp_path / "s.csv", "\n".join(lines) + "\n"), id_field="id")
    assert store.describe("single").mock_rows == ()

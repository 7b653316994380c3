"""Mock rows of real Lens families: a value is real only if k records share it; others keep the format."""

from __future__ import annotations

import random
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from node.field_stats import K_ANONYMITY_THRESHOLD
from node.mock_rows import _shape_preserving
from node.partition import partition_by_jurisdiction, read_rows, write_partitions
from node.store import DatasetStore, FieldType

K = K_ANONYMITY_THRESHOLD
LENS_SAMPLE = Path(__file__).resolve().parents[2] / "data" / "lens_drone_families.csv.gz"
ID = "publication_number"
SEEDS = (0, 1, 2, 3, 4, 5)
IDENTIFIER_FIELDS = ("lens_id", "url", "application_number", "priority_numbers")


def _as_csv_text(value: object) -> str:
    return "" if value is None else str(value)


def _shape(text: str) -> str:
    """Character class at each position: 9 digit, A upper, a lower, L other letter, else the character."""
    return "".join(
        "9" if char.isdigit() else "A" if char.isupper() else "a" if char.islower() else "L" if char.isalpha()
        else char
        for char in text
    )  # fmt: skip


@pytest.fixture(scope="module", params=[1, 2], ids=["europe", "asia-pacific"])
def lens(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A provider's real share of the Lens sample in a store, its rows as CSV text, and mock rows of SEEDS."""
    header, rows = read_rows(LENS_SAMPLE)
    share = partition_by_jurisdiction(rows, 3)[request.param]
    directory = tmp_path_factory.mktemp("node")
    paths = write_partitions([share], directory / "parts", header)
    store = DatasetStore.for_node(directory)
    store.import_csv("families", paths[share.provider], id_field=ID, description="Drones", source="Lens.org")
    mock = [row for seed in SEEDS for row in store.describe("families", seed=seed).mock_rows]
    return store, [dict(row) for row in share.rows], mock


def test_a_mock_value_is_real_only_when_at_least_k_records_hold_it(lens) -> None:
    store, rows, mock = lens
    value_fields = [field for field in store.info("families").fields if field != ID]
    assert len(mock) == 20 * len(SEEDS)
    for field in value_fields:
        held_by = Counter(row[field] for row in rows if row[field])
        for row in mock:
            value = _as_csv_text(row[field])
            assert value == "" or held_by[value] in (0, *range(K, len(rows) + 1)), (field, value)


def test_unique_identifiers_are_synthetic_but_keep_their_format(lens) -> None:
    _store, rows, mock = lens
    for field in IDENTIFIER_FIELDS:
        real = {row[field] for row in rows if row[field]}
        shapes = {_shape(value) for value in real}
        shown = [row[field] for row in mock if row[field] is not None]
        assert shown, field
        for value in shown:
            assert value not in real, (field, value)
            assert _shape(value) in shapes, (field, value)
    assert all(row["url"].startswith("https://lens.org/") for row in mock if row["url"])  # shared by all


def test_mock_titles_are_words_that_at_least_k_records_use(lens) -> None:
    _store, rows, mock = lens
    titles = Counter(row["title"] for row in rows)
    records_per_word = Counter(word for row in rows for word in set(row["title"].split()))
    mock_titles = [row["title"] for row in mock]
    synthetic = [title for title in mock_titles if titles[title] < K]
    assert len(synthetic) > len(mock_titles) // 2  # nearly every real title is unique
    for title in synthetic:
        assert titles[title] == 0
        assert all(records_per_word[word] >= K for word in title.split()), title
    mean_real = sum(map(len, titles.elements())) / len(rows)
    mean_mock = sum(map(len, synthetic)) / len(synthetic)
    assert 0.6 * mean_real < mean_mock < 1.6 * mean_real


def test_numbers_and_dates_stay_inside_the_k_anonymous_bounds(lens) -> None:
    store, rows, mock = lens
    description = store.describe("families")
    stats = {entry.name: entry for entry in description.statistics}
    numeric = [field.name for field in description.info.schema if field.type is FieldType.INTEGER]
    dates = [field.name for field in description.info.schema if field.type is FieldType.DATE]
    assert "cited_count" in numeric and "publication_date" in dates
    for field in numeric:
        shown = [row[field] for row in mock if row[field] is not None]
        assert all(stats[field].min <= value <= stats[field].max for value in shown), field
    for field in dates:
        shown = [row[field] for row in mock if row[field] is not None]
        assert all(stats[field].min_text <= value <= stats[field].max_text for value in shown), field
        for value in shown:
            date.fromisoformat(value)  # a real calendar date
    top_cited = max(int(row["cited_count"]) for row in rows)
    assert top_cited not in {row["cited_count"] for row in mock}  # the most cited record stays hidden


def test_mock_rows_depend_only_on_the_seed(lens) -> None:
    store, rows, _mock = lens
    first = store.describe("families", seed=7).mock_rows
    assert store.describe("families", seed=7).mock_rows == first
    assert store.describe("families", seed=8).mock_rows != first
    real_tuples = {tuple(row[field] for field in row if field != ID) for row in rows}
    fields = [field for field in store.info("families").fields if field != ID]
    for row in first:
        assert tuple(_as_csv_text(row[field]) for field in fields) not in real_tuples


def test_rare_numbers_are_left_out_when_no_k_anonymous_range_exists(tmp_path: Path) -> None:
    # Nine counts (one record has none): fewer than 2k, so there is no range to draw a synthetic count from,
    # and only 0 (held by k records) may show. Kind A and B (k records each) let 0 and missing form rows
    # that are not real: (B, 0) and (A, missing).
    cited = [*["0"] * K, "3", "8", "13", "21", ""]
    kinds = ["A"] * K + ["B"] * K
    lines = ["id,kind,cited_count"] + [
        f"r{i},{kind},{n}" for i, (kind, n) in enumerate(zip(kinds, cited, strict=True))
    ]
    path = tmp_path / "small.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    store = DatasetStore.for_node(tmp_path)
    store.import_csv("small", path, id_field="id", description="small", source="test")
    mock = [row for seed in SEEDS for row in store.describe("small", seed=seed).mock_rows]
    assert {(row["kind"], row["cited_count"]) for row in mock} == {("B", 0), ("A", None)}


def test_shape_preserving_keeps_separators_and_the_shared_prefix() -> None:
    rng = random.Random(1)
    original = "US 2015/0003626 A1;;Zürich 北京"
    for _ in range(50):
        fake = _shape_preserving(original, 8, rng)
        assert fake[:8] == "US 2015/" and fake != original
        assert _shape(fake) == _shape(original) and len(fake) == len(original)
    different = {_shape_preserving(original, 0, rng) for _ in range(50)}
    assert len(different) == 50


def test_rare_floats_become_unseen_values_with_the_same_decimals(tmp_path: Path) -> None:
    ratios = [i / 2 + 0.25 for i in range(4 * K)]  # 0.25, 0.75, ...: every value unique
    lines = ["id,ratio"] + [f"r{i},{ratio}" for i, ratio in enumerate(ratios)]
    path = tmp_path / "ratios.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    store = DatasetStore.for_node(tmp_path)
    store.import_csv("ratios", path, id_field="id", description="ratios", source="test")
    description = store.describe("ratios")
    (_, ratio) = description.statistics
    shown = [row["ratio"] for row in description.mock_rows]

    assert len(shown) == 20 and (ratio.min, ratio.max) == (ratios[K - 1], ratios[-K])
    for value in shown:
        assert isinstance(value, float) and value not in ratios
        assert ratio.min <= value <= ratio.max and round(value, 2) == value

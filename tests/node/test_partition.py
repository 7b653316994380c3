"""Partitioning the real Lens drone families across provider nodes by jurisdiction."""

from __future__ import annotations

import csv
import random
from collections import Counter
from pathlib import Path

import pytest

from node.partition import (
    REGIONAL_SPEC,
    Partition,
    partition_by_jurisdiction,
    partition_by_spec,
    read_rows,
    write_partitions,
)

LENS_SAMPLE = Path(__file__).resolve().parents[2] / "data" / "lens_drone_families.csv.gz"


@pytest.fixture(scope="module")
def lens() -> tuple[list[str], list[dict[str, str]]]:
    return read_rows(LENS_SAMPLE)


@pytest.fixture(scope="module")
def rows(lens: tuple[list[str], list[dict[str, str]]]) -> list[dict[str, str]]:
    return lens[1]


def _ids(partition: Partition) -> set[str]:
    return {row["publication_number"] for row in partition.rows}


def test_sample_is_the_whole_lens_table(rows: list[dict[str, str]]) -> None:
    counts = Counter(row["jurisdiction"] for row in rows)
    assert len(rows) == 5884
    assert (counts["US"], counts["WO"], counts["AU"], counts["CN"], counts["EP"]) == (
        3460,
        808,
        366,
        355,
        244,
    )


@pytest.mark.parametrize("n_providers", [1, 2, 3, 4, 5])
def test_partitions_are_disjoint_complete_and_keep_jurisdictions_whole(
    rows: list[dict[str, str]], n_providers: int
) -> None:
    partitions = partition_by_jurisdiction(rows, n_providers)

    assert len(partitions) == n_providers
    assert len({partition.provider for partition in partitions}) == n_providers
    assert all(partition.row_count > 0 for partition in partitions)
    every_id = [row["publication_number"] for partition in partitions for row in partition.rows]
    assert len(every_id) == len(set(every_id)) == len(rows)  # disjoint and complete
    assert set(every_id) == {row["publication_number"] for row in rows}
    holders: dict[str, set[str]] = {}
    for partition in partitions:
        seen = {row["jurisdiction"] for row in partition.rows}
        assert partition.jurisdictions == tuple(sorted(seen))
        for jurisdiction in seen:
            holders.setdefault(jurisdiction, set()).add(partition.provider)
    assert all(len(providers) == 1 for providers in holders.values()), "a jurisdiction was split"
    assert set(holders) == {row["jurisdiction"] for row in rows}


@pytest.mark.parametrize("n_providers", [1, 2, 3, 4, 5])
def test_partitioning_is_deterministic_and_ignores_row_order(
    rows: list[dict[str, str]], n_providers: int
) -> None:
    first = partition_by_jurisdiction(rows, n_providers)
    again = partition_by_jurisdiction(list(rows), n_providers)
    shuffled = list(rows)
    random.Random(7).shuffle(shuffled)
    from_shuffled = partition_by_jurisdiction(shuffled, n_providers)

    assert first == again
    assert [(p.provider, p.jurisdictions) for p in first] == [
        (p.provider, p.jurisdictions) for p in from_shuffled
    ]
    assert [_ids(p) for p in first] == [_ids(p) for p in from_shuffled]


def test_three_providers_follow_regions(rows: list[dict[str, str]]) -> None:
    us, europe, asia_pacific = partition_by_jurisdiction(rows, 3)

    assert (us.provider, europe.provider, asia_pacific.provider) == tuple(REGIONAL_SPEC)
    assert "US" in us.jurisdictions and not {"EP", "WO", "CN", "AU"} & set(us.jurisdictions)
    assert {"EP", "WO"} <= set(europe.jurisdictions)
    assert {"CN", "AU"} <= set(asia_pacific.jurisdictions)
    # Real holders differ in size: the US office holds most, as the export does.
    assert us.row_count > europe.row_count > asia_pacific.row_count


def test_greedy_split_gives_the_largest_jurisdiction_its_own_provider(rows: list[dict[str, str]]) -> None:
    counts = Counter(row["jurisdiction"] for row in rows)
    largest = max(counts, key=counts.__getitem__)
    for n_providers in (2, 4, 5):
        partitions = partition_by_jurisdiction(rows, n_providers)
        assert partitions[0].jurisdictions == (largest,)
        sizes = [partition.row_count for partition in partitions[1:]]
        # The others are balanced: none exceeds the smallest by more than the largest remaining jurisdiction.
        assert max(sizes) - min(sizes) <= max(count for name, count in counts.items() if name != largest)


@pytest.mark.parametrize("bad", [0, -1, 35, 100, True, 2.0, "3", None])
def test_bad_number_of_providers_is_refused(rows: list[dict[str, str]], bad: object) -> None:
    with pytest.raises(ValueError, match="provider"):
        partition_by_jurisdiction(rows, bad)  # type: ignore[arg-type]


def test_as_many_providers_as_jurisdictions_is_allowed(rows: list[dict[str, str]]) -> None:
    n_jurisdictions = len({row["jurisdiction"] for row in rows})
    partitions = partition_by_jurisdiction(rows, n_jurisdictions)
    assert all(len(partition.jurisdictions) == 1 for partition in partitions)


def test_row_without_jurisdiction_is_refused() -> None:
    with pytest.raises(ValueError, match="row 2"):
        partition_by_jurisdiction([{"jurisdiction": "US"}, {"jurisdiction": ""}], 1)


def test_spec_places_unlisted_jurisdictions_on_the_lightest_provider() -> None:
    rows = [{"jurisdiction": code} for code in ["US"] * 5 + ["EP"] * 2 + ["JP"] * 1]
    us, other = partition_by_spec(rows, {"us-office": ["US"], "other": ["EP"]})
    assert us.jurisdictions == ("US",)
    assert other.jurisdictions == ("EP", "JP")
    assert (us.row_count, other.row_count) == (5, 3)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({}, "no provider"),
        ({"a": ["US"], "b": ["US"]}, "both"),
        ({"../evil": ["US"]}, "provider name"),
        ({"Upper": ["US"]}, "provider name"),
        ({"a": ["US"], "b": ["EP"], "c": ["FR"]}, "no rows"),
    ],
)
def test_bad_spec_is_refused(spec: dict[str, list[str]], reason: str) -> None:
    rows = [{"jurisdiction": "US"}, {"jurisdiction": "EP"}]
    with pytest.raises(ValueError, match=reason):
        partition_by_spec(rows, spec)


def test_write_partitions_round_trips(lens: tuple[list[str], list[dict[str, str]]], tmp_path: Path) -> None:
    header, rows = lens
    partitions = partition_by_jurisdiction(rows, 3)

    written = write_partitions(partitions, tmp_path / "parts", header)

    assert set(written) == {partition.provider for partition in partitions}
    for partition in partitions:
        path = written[partition.provider]
        assert path == tmp_path / "parts" / f"{partition.provider}.csv"
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            assert reader.fieldnames == header
            back = list(reader)
        assert back == [dict(row) for row in partition.rows]


def test_write_partitions_refuses_rows_outside_the_header(tmp_path: Path) -> None:
    partition = Partition("provider-1", ("US",), ({"jurisdiction": "US", "extra": "x"},))
    with pytest.raises(ValueError, match="extra"):
        write_partitions([partition], tmp_path, ["jurisdiction"])

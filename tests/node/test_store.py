"""The node's dataset store: import, statistics, mock rows, fetch, and the errors around them."""

from __future__ import annotations

import csv
import gzip
import io
import json
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from node.field_stats import K_ANONYMITY_THRESHOLD
from node.partition import partition_by_jurisdiction, read_rows, write_partitions
from node.store import (
    DATASETS_DB,
    DatasetExists,
    DatasetStore,
    FieldType,
    InvalidDataset,
    StoreError,
    UnknownDataset,
    UnknownField,
)

LENS_SAMPLE = Path(__file__).resolve().parents[2] / "data" / "lens_drone_families.csv.gz"

# Eight real rows of data/lens_drone_families.csv.gz (some columns), copied by hand; the expected statistics
# in the tests below were worked out by hand from these rows.
LENS_HEADER = (
    "publication_number",
    "jurisdiction",
    "kind",
    "publication_date",
    "publication_year",
    "title",
    "applicants",
    "cited_count",
    "simple_family_size",
)
LENS_ROWS = [
    ("US 2015/0003626 A1", "US", "A1", "2015-01-01", "2015",
     "Active Noise Cancellation Method For Automobiles", "TRAMMELL LLOYD;;MAX SOUND CORP", "1", "1"),
    ("US 2015/0005937 A1", "US", "A1", "2015-01-01", "2015", "Action Selection Apparatus And Methods",
     "BRAIN CORP", "0", "1"),
    ("US 2015/0006429 A1", "US", "A1", "2015-01-01", "2015", "Confidence Ratings For Delivery Of Items",
     "UNITED PARCEL SERVICE INC", "0", "1"),
    ("US 2015/0006184 A1", "US", "A1", "2015-01-01", "2015", "Wireless Control Of Linked Devices",
     "HARMAN INT IND", "2", "4"),
    ("US 2015/0020558 A1", "US", "A1", "2015-01-22", "2015", "Mobile Lock With Retractable Cable",
     "WILLIAMS DONALD S", "1", "2"),
    ("US H000485 H", "US", "H", "1988-07-05", "1988", "Frangible Target With Hydraulic Warhead Simulator",
     "", "9", "1"),
    ("EP 0095016 A1", "EP", "A1", "1983-11-30", "1983",
     "Device For The Breeding Of Stronger Bees With A Higher Resistance Against Diseases.",
     "G & W SCHREIB U UBERSETZUNGSBU", "3", "2"),
    ("CN 101025382 A", "CN", "A", "2007-08-29", "2007",
     "Random Pattern Measuring Method For Statistic Modulation Transfer Function",
     "BEIJING TECHNOLOGY UNIV", "0", "2"),
]  # fmt: skip


def _csv_text(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


LENS_ROWS_CSV = _csv_text(LENS_HEADER, LENS_ROWS)
ID = "publication_number"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _import(store: DatasetStore, name: str, path: Path, id_field: str = ID) -> None:
    store.import_csv(name, path, id_field=id_field, description=f"{name} test data", source="Lens.org (test)")


def _as_csv_text(value: object) -> str:
    return "" if value is None else str(value)


@pytest.fixture
def store(tmp_path: Path) -> DatasetStore:
    return DatasetStore.for_node(tmp_path)


@pytest.fixture
def hand_made(store: DatasetStore, tmp_path: Path) -> DatasetStore:
    _import(store, "lens_rows", _write(tmp_path / "lens_rows.csv", LENS_ROWS_CSV))
    return store


@pytest.fixture(scope="module")
def lens_partition(tmp_path_factory: pytest.TempPathFactory) -> tuple[DatasetStore, list[dict[str, str]]]:
    """The Asia-Pacific share of the real Lens sample, written as `ipspace node init` would get it."""
    header, rows = read_rows(LENS_SAMPLE)
    apac = partition_by_jurisdiction(rows, 3)[2]
    directory = tmp_path_factory.mktemp("node")
    paths = write_partitions([apac], directory / "parts", header)
    store = DatasetStore.for_node(directory)
    store.import_csv(
        "lens_families",
        paths[apac.provider],
        id_field=ID,
        description="Drone patent families",
        source="Lens.org",
    )
    return store, [dict(row) for row in apac.rows]


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
    _import(store, "boundary", _write(tmp_path / "b.csv", "\n".join(lines) + "\n"), id_field="id")

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
    _import(store, "ranges", _write(tmp_path / "r.csv", "\n".join(lines) + "\n"), id_field="id")
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
    _import(store, "pairs", _write(tmp_path / "p.csv", "\n".join(lines) + "\n"), id_field="id")
    mock = store.describe("pairs", seed=5).mock_rows
    assert len(mock) == 20
    assert {(row["left"], row["right"]) for row in mock} <= {("a", "y"), ("b", "x")}


def test_no_mock_rows_when_every_combination_is_real(store: DatasetStore, tmp_path: Path) -> None:
    # One value held by k records: it may be shown, but the only row it makes is real.
    lines = ["id,status"] + [f"{i},open" for i in range(K_ANONYMITY_THRESHOLD)]
    _import(store, "single", _write(tmp_path / "s.csv", "\n".join(lines) + "\n"), id_field="id")
    assert store.describe("single").mock_rows == ()


# -- fetch ---------------------------------------------------------------------------------------------------


def test_fetch_returns_only_asked_fields_in_request_order(hand_made: DatasetStore) -> None:
    rows, missing = hand_made.fetch(
        "lens_rows",
        ["EP 0095016 A1", "US 9999999 B1", "US H000485 H", "EP 0095016 A1"],
        ["cited_count", "title"],
    )
    assert rows == (
        {ID: "EP 0095016 A1", "cited_count": 3,
         "title": "Device For The Breeding Of Stronger Bees With A Higher Resistance Against Diseases."},
        {ID: "US H000485 H", "cited_count": 9, "title": "Frangible Target With Hydraulic Warhead Simulator"},
    )  # fmt: skip
    assert missing == ("US 9999999 B1",)


def test_fetch_missing_values_and_id_only(hand_made: DatasetStore) -> None:
    result = hand_made.fetch("lens_rows", ["US H000485 H"], ["applicants", ID])
    assert result.rows == ({ID: "US H000485 H", "applicants": None},)
    assert hand_made.fetch("lens_rows", ["CN 101025382 A"], []).rows == ({ID: "CN 101025382 A"},)


def test_fetch_many_ids_spans_query_chunks(lens_partition: tuple[DatasetStore, list]) -> None:
    store, rows = lens_partition
    wanted = [row[ID] for row in reversed(rows)][:600]
    result = store.fetch("lens_families", wanted, ["jurisdiction"])
    assert [row[ID] for row in result.rows] == wanted
    assert result.missing_ids == ()


def test_fetch_refuses_non_string_ids(hand_made: DatasetStore) -> None:
    with pytest.raises(TypeError, match="strings"):
        hand_made.fetch("lens_rows", [123], ["title"])  # type: ignore[list-item]


# -- errors --------------------------------------------------------------------------------------------------


def test_unknown_dataset(store: DatasetStore) -> None:
    for call in (
        lambda: store.describe("nope"),
        lambda: store.info("nope"),
        lambda: store.fetch("nope", ["x"], []),
    ):
        with pytest.raises(UnknownDataset, match="'nope'"):
            call()


@pytest.mark.parametrize(
    "field", ["missing", 'title" FROM ds_lens_rows; --', "title, applicants", "TITLE", ""]
)
def test_unknown_field_is_refused_before_reading(hand_made: DatasetStore, field: str) -> None:
    with pytest.raises(UnknownField) as raised:
        hand_made.fetch("lens_rows", ["US H000485 H"], ["title", field])
    assert raised.value.field == field
    assert hand_made.info("lens_rows").row_count == 8  # nothing was harmed


@pytest.mark.parametrize(
    "bad_field",
    ['title"; DROP TABLE datasets; --', "Title", "1st", "_hidden", "a b", "naïve", "x" * 64, ""],
)
def test_injection_looking_or_odd_header_is_refused(
    store: DatasetStore, tmp_path: Path, bad_field: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(f'{ID},"{bad_field.replace(chr(34), chr(34) * 2)}"\nUS 1 A,x\n', encoding="utf-8")
    with pytest.raises(InvalidDataset):
        _import(store, "bad", path)
    assert store.list() == []
    with sqlite3.connect(store.path) as connection:
        tables = {
            name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    assert tables == {"datasets"}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (f"{ID},title\nA,x\nA,y\n", "already used on line 2"),
        (f"{ID},title\nA,x\n,y\n", "line 3: the record id is empty"),
        (f"{ID},title\nA,x\nB,y,z\n", "line 3: 3 cells"),
        (f"{ID},title,title\nA,x,y\n", "more than once"),
        ("number,title\nA,x\n", "not a column"),
        ("", "empty"),
    ],
)
def test_malformed_csv_is_refused_and_nothing_is_stored(
    store: DatasetStore, tmp_path: Path, text: str, reason: str
) -> None:
    with pytest.raises(InvalidDataset, match=reason):
        _import(store, "broken", _write(tmp_path / "broken.csv", text))
    assert store.list() == []


@pytest.mark.parametrize("name", ["Lens", "1lens", "lens-rows", "lens;drop", "x" * 61, ""])
def test_bad_dataset_name_is_refused(store: DatasetStore, tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidDataset, match="dataset name"):
        _import(store, name, _write(tmp_path / "ok.csv", LENS_ROWS_CSV))


def test_existing_dataset_is_kept_unless_replace(hand_made: DatasetStore, tmp_path: Path) -> None:
    smaller = _write(tmp_path / "smaller.csv", "\n".join(LENS_ROWS_CSV.splitlines()[:3]) + "\n")
    with pytest.raises(DatasetExists):
        _import(hand_made, "lens_rows", smaller)
    assert hand_made.info("lens_rows").row_count == 8

    hand_made.import_csv(
        "lens_rows", smaller, id_field=ID, description="two rows", source="Lens.org", replace=True
    )
    assert hand_made.info("lens_rows").row_count == 2
    assert hand_made.fetch("lens_rows", ["CN 101025382 A"], []).missing_ids == ("CN 101025382 A",)


def test_tampered_field_name_in_the_database_is_refused(hand_made: DatasetStore) -> None:
    with sqlite3.connect(hand_made.path) as connection:
        schema = json.loads(connection.execute("SELECT schema_json FROM datasets").fetchone()[0])
        schema[1][0] = 'x" FROM datasets; --'
        connection.execute("UPDATE datasets SET schema_json = ?", (json.dumps(schema),))
    with pytest.raises(InvalidDataset, match="stored field name"):
        hand_made.fetch("lens_rows", ["US H000485 H"], [])


# -- formats, types, persistence -----------------------------------------------------------------------------


def test_gzip_input_gives_the_same_dataset(store: DatasetStore, tmp_path: Path) -> None:
    plain = _write(tmp_path / "rows.csv", LENS_ROWS_CSV)
    compressed = tmp_path / "rows.data"  # recognised by content, not by name
    compressed.write_bytes(gzip.compress(LENS_ROWS_CSV.encode("utf-8")))
    _import(store, "plain", plain)
    _import(store, "packed", compressed)

    assert store.describe("plain").statistics == store.describe("packed").statistics
    assert store.info("plain").schema == store.info("packed").schema
    assert store.info("plain").source_sha256 != store.info("packed").source_sha256


def test_type_inference_keeps_identifiers_and_odd_values_as_text(store: DatasetStore, tmp_path: Path) -> None:
    text = (
        "id,serial,ratio,when,huge,blank,year\n001,007,1,2020-02-28,1e999,,2020\n002,12,2.5,2020-02-30,3,,\n"
    )
    _import(store, "odd", _write(tmp_path / "odd.csv", text), id_field="id")
    types = {field.name: field.type for field in store.info("odd").schema}
    assert types == {
        "id": FieldType.TEXT,  # the id is always text
        "serial": FieldType.TEXT,  # leading zero kept
        "ratio": FieldType.FLOAT,  # int and float mix
        "when": FieldType.TEXT,  # 30 February is not a date
        "huge": FieldType.TEXT,  # not finite
        "blank": FieldType.TEXT,  # no value at all
        "year": FieldType.INTEGER,  # a missing value does not change the type
    }
    rows, _ = store.fetch("odd", ["001"], ["serial", "ratio", "year"])
    assert rows == ({"id": "001", "serial": "007", "ratio": 1.0, "year": 2020},)


def test_store_persists_across_instances_and_refuses_use_after_close(hand_made: DatasetStore) -> None:
    assert hand_made.path.name == DATASETS_DB
    reopened = DatasetStore(hand_made.path)
    assert [info.name for info in reopened.list()] == ["lens_rows"]
    assert reopened.describe("lens_rows").info == hand_made.info("lens_rows")

    reopened.close()
    with pytest.raises(StoreError, match="closed"):
        reopened.list()

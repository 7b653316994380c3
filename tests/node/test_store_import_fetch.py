"""The node's dataset store: import, fetch, and the errors around them; formats, types and persistence."""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path

import pytest

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
from tests.node._store_helpers import (
    ID,
    LENS_ROWS_CSV,
    import_dataset,
    write_csv,
)

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
        import_dataset(store, "bad", path)
    assert store.list() == []
    with sqlite3.connect(store.path) as connection:
        tables = {
            name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    assert tables == {"datasets", "embedding_sets", "embeddings"}  # no dataset table was made


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
        import_dataset(store, "broken", write_csv(tmp_path / "broken.csv", text))
    assert store.list() == []


@pytest.mark.parametrize("name", ["Lens", "1lens", "lens-rows", "lens;drop", "x" * 61, ""])
def test_bad_dataset_name_is_refused(store: DatasetStore, tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidDataset, match="dataset name"):
        import_dataset(store, name, write_csv(tmp_path / "ok.csv", LENS_ROWS_CSV))


def test_existing_dataset_is_kept_unless_replace(hand_made: DatasetStore, tmp_path: Path) -> None:
    smaller = write_csv(tmp_path / "smaller.csv", "\n".join(LENS_ROWS_CSV.splitlines()[:3]) + "\n")
    with pytest.raises(DatasetExists):
        import_dataset(hand_made, "lens_rows", smaller)
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
    plain = write_csv(tmp_path / "rows.csv", LENS_ROWS_CSV)
    compressed = tmp_path / "rows.data"  # recognised by content, not by name
    compressed.write_bytes(gzip.compress(LENS_ROWS_CSV.encode("utf-8")))
    import_dataset(store, "plain", plain)
    import_dataset(store, "packed", compressed)

    assert store.describe("plain").statistics == store.describe("packed").statistics
    assert store.info("plain").schema == store.info("packed").schema
    assert store.info("plain").source_sha256 != store.info("packed").source_sha256


def test_type_inference_keeps_identifiers_and_odd_values_as_text(store: DatasetStore, tmp_path: Path) -> None:
    text = (
        "id,serial,ratio,when,huge,blank,year\n001,007,1,2020-02-28,1e999,,2020\n002,12,2.5,2020-02-30,3,,\n"
    )
    import_dataset(store, "odd", write_csv(tmp_path / "odd.csv", text), id_field="id")
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

"""Embeddings made at import with the real all-MiniLM-L6-v2: stored per record, in order, all or nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from models.matching.embeddings import MODEL_ID, TextEmbedder
from node.store import DATASETS_DB, DatasetStore, InvalidDataset, NotEmbedded, UnknownDataset
from tests.node._store_helpers import ID, LENS_HEADER, LENS_ROWS, LENS_ROWS_CSV, _csv_text, write_csv

TITLE = LENS_HEADER.index("title")


def _import(store: DatasetStore, path: Path, *, fields: tuple[str, ...] = ("title",), replace: bool = False):
    return store.import_csv(
        "lens_rows",
        path,
        id_field=ID,
        description="eight hand-copied Lens rows",
        source="Lens.org (test)",
        replace=replace,
        embed_fields=fields,
    )


def test_each_record_s_title_is_embedded_at_import_in_import_order(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path / DATASETS_DB)
    _import(store, write_csv(tmp_path / "rows.csv", LENS_ROWS_CSV))

    stored = store.embeddings("lens_rows")
    assert stored.record_ids == tuple(row[0] for row in LENS_ROWS)
    assert stored.fields == ("title",) and stored.model_id == MODEL_ID
    expected = TextEmbedder().embed([row[TITLE] for row in LENS_ROWS])
    np.testing.assert_allclose(stored.vectors, expected, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(stored.vectors, axis=1), 1.0, atol=1e-5)


def test_several_fields_are_joined_and_a_record_without_text_is_left_out(tmp_path: Path) -> None:
    # Two of the real rows with their title and applicants blanked: records without text to match.
    rows = [*LENS_ROWS[:3], *((*row[:TITLE], "", "", *row[TITLE + 2 :]) for row in LENS_ROWS[3:5])]
    store = DatasetStore(tmp_path / DATASETS_DB)
    path = write_csv(tmp_path / "rows.csv", _csv_text(LENS_HEADER, rows))
    _import(store, path, fields=("title", "applicants"))

    stored = store.embeddings("lens_rows")
    assert stored.record_ids == tuple(row[0] for row in LENS_ROWS[:3])
    first = f"{LENS_ROWS[0][TITLE]}. {LENS_ROWS[0][TITLE + 1]}"
    np.testing.assert_allclose(stored.vectors[0], TextEmbedder().embed_one(first), atol=1e-5)
    assert store.info("lens_rows").row_count == 5  # the rows themselves are all kept


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (("cited_count",), "holds int values, not text"),
        (("abstract",), "it is not a column"),
        (("title", "title"), "repeat a name"),
    ],
)
def test_an_embedded_field_that_is_not_a_text_column_refuses_the_whole_import(
    tmp_path: Path, fields: tuple[str, ...], reason: str
) -> None:
    store = DatasetStore(tmp_path / DATASETS_DB)
    with pytest.raises(InvalidDataset, match=reason):
        _import(store, write_csv(tmp_path / "rows.csv", LENS_ROWS_CSV), fields=fields)
    assert store.list() == []
    with sqlite3.connect(tmp_path / DATASETS_DB) as db:
        assert db.execute("SELECT COUNT(*) FROM embeddings").fetchone() == (0,)


def test_a_dataset_imported_without_embeddings_says_how_to_get_them(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path / DATASETS_DB)
    _import(store, write_csv(tmp_path / "rows.csv", LENS_ROWS_CSV), fields=())
    with pytest.raises(NotEmbedded, match="--embed"):
        store.embeddings("lens_rows")
    with pytest.raises(UnknownDataset):
        store.embeddings("no_such_dataset")


def test_replacing_a_dataset_replaces_its_embeddings(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path / DATASETS_DB)
    _import(store, write_csv(tmp_path / "all.csv", LENS_ROWS_CSV))
    _import(store, write_csv(tmp_path / "two.csv", _csv_text(LENS_HEADER, LENS_ROWS[-2:])), replace=True)

    assert store.embeddings("lens_rows").record_ids == tuple(row[0] for row in LENS_ROWS[-2:])
    reopened = DatasetStore(tmp_path / DATASETS_DB)  # and they persist in the file
    assert reopened.embeddings("lens_rows").vectors.shape == (2, 384)


def test_fields_embedded_one_by_one_are_sets_of_their_own_named_by_their_field(tmp_path: Path) -> None:
    store = DatasetStore(tmp_path / DATASETS_DB)
    path = write_csv(tmp_path / "rows.csv", LENS_ROWS_CSV)

    def import_rows(embed_fields: tuple[str, ...], embed_each: tuple[str, ...]) -> None:
        store.import_csv(
            "lens_rows",
            path,
            id_field=ID,
            description="eight hand-copied Lens rows",
            source="Lens.org (test)",
            embed_fields=embed_fields,
            embed_each=embed_each,
        )

    with pytest.raises(InvalidDataset, match="named twice"):
        import_rows(("title",), ("title",))
    import_rows(("title", "applicants"), ("title", "applicants"))
    joined = store.embeddings("lens_rows", ("title", "applicants"))
    titles, applicants = (
        store.embeddings("lens_rows", ("title",)),
        store.embeddings("lens_rows", ("applicants",)),
    )
    assert (joined.fields, titles.fields, applicants.fields) == (
        ("title", "applicants"),
        ("title",),
        ("applicants",),
    )
    model = TextEmbedder()
    np.testing.assert_allclose(titles.vectors, model.embed([row[TITLE] for row in LENS_ROWS]), atol=1e-5)
    with_applicants = [row for row in LENS_ROWS if row[TITLE + 1].strip()]  # one real row names none
    assert applicants.record_ids == tuple(row[0] for row in with_applicants)
    np.testing.assert_allclose(
        applicants.vectors, model.embed([row[TITLE + 1] for row in with_applicants]), atol=1e-5
    )
    with pytest.raises(NotEmbedded, match=r"several embedding sets.*title\+applicants; title; applicants"):
        store.embeddings("lens_rows")  # which one is meant must be said
    with pytest.raises(NotEmbedded, match="no embedding set of abstract"):
        store.embeddings("lens_rows", ("abstract",))

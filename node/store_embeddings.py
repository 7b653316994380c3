"""Text embeddings of a dataset's records, computed once at import and kept beside the rows.

Matching scores every record of a dataset for each query, so the vectors must be ready before the first
query: embedding 6,000 titles takes seconds to minutes on two cores, which a query must not wait for. The
text of a record is its embedded fields joined in the order given (empty values left out); a record whose
fields are all empty has no text to match and is left out of the vectors (its row stays in the dataset).
Vectors are stored as float32 little-endian blobs, one row per record, with the model that made them.

A dataset may hold several sets, one per group of embedded fields: a patent dataset embeds its title (one
set), a dataset of rated phrase pairs embeds its anchor and its target phrases separately (two sets, which
the matching head trains on). Sets are numbered in the order the import named them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from node.store_errors import InvalidDataset
from node.store_import import CsvImport
from node.store_schema import FieldType

SCHEMA = """
CREATE TABLE IF NOT EXISTS embedding_sets (
    dataset TEXT NOT NULL,
    set_index INTEGER NOT NULL CHECK (set_index >= 0),
    fields_json TEXT NOT NULL,
    model TEXT NOT NULL,
    dimension INTEGER NOT NULL CHECK (dimension > 0),
    PRIMARY KEY (dataset, set_index),
    UNIQUE (dataset, fields_json)
);
CREATE TABLE IF NOT EXISTS embeddings (
    dataset TEXT NOT NULL,
    set_index INTEGER NOT NULL,
    position INTEGER NOT NULL,
    record_id TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (dataset, set_index, position)
);
"""
FIELD_SEPARATOR = ". "
_VECTOR_TYPE = np.dtype("<f4")


class Embedder(Protocol):
    """What the store needs of a text embedding model (models/matching/embeddings.py has the real one)."""

    model_id: str  # names the model and its version, stored with the vectors

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm float32 vectors, one row per text."""
        ...


@dataclass(frozen=True)
class RecordEmbeddings:
    """A dataset's vectors in import order: `vectors[i]` embeds the record `record_ids[i]` (records without
    text in the embedded fields are not among them)."""

    record_ids: tuple[str, ...]
    vectors: np.ndarray  # float32, shape (records, dimension)
    fields: tuple[str, ...]
    model_id: str


def embed_import(plan: CsvImport, fields: Sequence[str], embedder: Embedder) -> RecordEmbeddings:
    """Embed the records of a prepared import; raises InvalidDataset for a field that is not a text column."""
    types = {field.name: field.type for field in plan.schema}
    for field in fields:
        if field not in types:
            raise InvalidDataset(f"cannot embed {field!r}: it is not a column ({', '.join(types)})")
        if types[field] != FieldType.TEXT:
            raise InvalidDataset(f"cannot embed {field!r}: it holds {types[field].value} values, not text")
    if len(set(fields)) != len(fields):
        raise InvalidDataset(f"the embedded fields repeat a name: {list(fields)}")
    names = [field.name for field in plan.schema]
    id_position = names.index(plan.id_field)
    positions = [names.index(field) for field in fields]
    record_ids, texts = [], []
    for _line, row in plan.csv.rows():
        text = FIELD_SEPARATOR.join(row[p].strip() for p in positions if row[p].strip())
        if text:
            record_ids.append(row[id_position])
            texts.append(text)
    if not texts:
        raise InvalidDataset(f"no record has any text in {', '.join(map(repr, fields))} to embed")
    vectors = np.asarray(embedder.embed(texts), dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(texts):
        raise ValueError(f"the embedder returned shape {vectors.shape} for {len(texts)} texts")
    return RecordEmbeddings(tuple(record_ids), vectors, tuple(fields), embedder.model_id)


def write_embeddings(
    connection: sqlite3.Connection, dataset: str, embedding_sets: Sequence[RecordEmbeddings]
) -> None:
    """Replace the dataset's stored vectors by these sets, numbered in order; the caller owns the
    transaction. Raises InvalidDataset when two sets embed the same fields."""
    fields = [embeddings.fields for embeddings in embedding_sets]
    if len(set(fields)) != len(fields):
        raise InvalidDataset(f"the embedding sets repeat a group of fields: {[list(f) for f in fields]}")
    delete_embeddings(connection, dataset)
    for set_index, embeddings in enumerate(embedding_sets):
        connection.execute(
            "INSERT INTO embedding_sets (dataset, set_index, fields_json, model, dimension)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                dataset,
                set_index,
                json.dumps(list(embeddings.fields)),
                embeddings.model_id,
                embeddings.vectors.shape[1],
            ),
        )
        connection.executemany(
            "INSERT INTO embeddings (dataset, set_index, position, record_id, vector) VALUES (?, ?, ?, ?, ?)",
            (
                (dataset, set_index, position, record_id, vector.astype(_VECTOR_TYPE).tobytes())
                for position, (record_id, vector) in enumerate(
                    zip(embeddings.record_ids, embeddings.vectors, strict=True)
                )
            ),
        )


def delete_embeddings(connection: sqlite3.Connection, dataset: str) -> None:
    connection.execute("DELETE FROM embeddings WHERE dataset = ?", (dataset,))
    connection.execute("DELETE FROM embedding_sets WHERE dataset = ?", (dataset,))


def embedded_field_groups(connection: sqlite3.Connection, dataset: str) -> tuple[tuple[str, ...], ...]:
    """The field groups of the dataset's embedding sets, in set order (empty: imported without any)."""
    return tuple(
        tuple(json.loads(fields_json))
        for (fields_json,) in connection.execute(
            "SELECT fields_json FROM embedding_sets WHERE dataset = ? ORDER BY set_index", (dataset,)
        )
    )


def read_embeddings(
    connection: sqlite3.Connection, dataset: str, fields: Sequence[str]
) -> RecordEmbeddings | None:
    """The vectors of the dataset's set that embeds exactly `fields`, or None when it has no such set."""
    stored = connection.execute(
        "SELECT set_index, model, dimension FROM embedding_sets WHERE dataset = ? AND fields_json = ?",
        (dataset, json.dumps(list(fields))),
    ).fetchone()
    if stored is None:
        return None
    set_index, model_id, dimension = stored
    record_ids, blobs = [], []
    for record_id, blob in connection.execute(
        "SELECT record_id, vector FROM embeddings WHERE dataset = ? AND set_index = ? ORDER BY position",
        (dataset, set_index),
    ):
        record_ids.append(record_id)
        blobs.append(blob)
    vectors = np.frombuffer(b"".join(blobs), dtype=_VECTOR_TYPE).reshape(len(blobs), dimension)
    return RecordEmbeddings(tuple(record_ids), vectors.astype(np.float32), tuple(fields), model_id)

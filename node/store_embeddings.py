"""Text embeddings of a dataset's records, computed once at import and kept beside the rows.

Matching scores every record of a dataset for each query, so the vectors must be ready before the first
query: embedding 6,000 titles takes seconds to minutes on two cores, which a query must not wait for. The
text of a record is its embedded fields joined in the order given (empty values left out); a record whose
fields are all empty has no text to match and is left out of the vectors (its row stays in the dataset).
Vectors are stored as float32 little-endian blobs, one row per record, with the model that made them.
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
    dataset TEXT PRIMARY KEY,
    fields_json TEXT NOT NULL,
    model TEXT NOT NULL,
    dimension INTEGER NOT NULL CHECK (dimension > 0)
);
CREATE TABLE IF NOT EXISTS embeddings (
    dataset TEXT NOT NULL,
    position INTEGER NOT NULL,
    record_id TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (dataset, position)
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


def write_embeddings(connection: sqlite3.Connection, dataset: str, embeddings: RecordEmbeddings) -> None:
    """Replace the dataset's stored vectors; the caller owns the transaction."""
    delete_embeddings(connection, dataset)
    connection.execute(
        "INSERT INTO embedding_sets (dataset, fields_json, model, dimension) VALUES (?, ?, ?, ?)",
        (dataset, json.dumps(list(embeddings.fields)), embeddings.model_id, embeddings.vectors.shape[1]),
    )
    connection.executemany(
        "INSERT INTO embeddings (dataset, position, record_id, vector) VALUES (?, ?, ?, ?)",
        (
            (dataset, position, record_id, vector.astype(_VECTOR_TYPE).tobytes())
            for position, (record_id, vector) in enumerate(
                zip(embeddings.record_ids, embeddings.vectors, strict=True)
            )
        ),
    )


def delete_embeddings(connection: sqlite3.Connection, dataset: str) -> None:
    connection.execute("DELETE FROM embeddings WHERE dataset = ?", (dataset,))
    connection.execute("DELETE FROM embedding_sets WHERE dataset = ?", (dataset,))


def read_embeddings(connection: sqlite3.Connection, dataset: str) -> RecordEmbeddings | None:
    """The dataset's vectors, or None when it was imported without embeddings."""
    stored = connection.execute(
        "SELECT fields_json, model, dimension FROM embedding_sets WHERE dataset = ?", (dataset,)
    ).fetchone()
    if stored is None:
        return None
    fields_json, model_id, dimension = stored
    record_ids, blobs = [], []
    for record_id, blob in connection.execute(
        "SELECT record_id, vector FROM embeddings WHERE dataset = ? ORDER BY position", (dataset,)
    ):
        record_ids.append(record_id)
        blobs.append(blob)
    vectors = np.frombuffer(b"".join(blobs), dtype=_VECTOR_TYPE).reshape(len(blobs), dimension)
    fields = tuple(json.loads(fields_json))
    return RecordEmbeddings(tuple(record_ids), vectors.astype(np.float32), fields, model_id)

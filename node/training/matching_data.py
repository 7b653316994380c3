"""A node's training data for the matching head: its human-rated phrase pairs as (2, 384) MiniLM inputs.

A dataset trains the head when it holds, per pair, an `anchor` and a `target` phrase, a human `score` in
[0, 1] and a `split` (``train`` or ``valid``): the rating data set's own split, so every node's held-out
pairs are its share of the published valid pairs and a job's pooled evaluation is that of all of them. The
phrases' vectors are the two embedding sets made when the dataset was imported (``embed_each`` anchor and
target, all-MiniLM-L6-v2); nothing is embedded during a job.

A pair whose phrase has no vector (an empty phrase) is left out; a dataset embedded by another model than the
one consumers embed their needs with is refused, since its head would project vectors from another space.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from models.matching.embeddings import EMBEDDING_DIM, MODEL_ID
from node.store_embeddings import RecordEmbeddings
from node.training.data import NotTrainable, PreparedData

REQUIRED_FIELDS = ("anchor", "target", "score", "split")
EMBEDDED_FIELDS = (("anchor",), ("target",))
SPLITS = ("train", "valid")


def check_pair_fields(fields: Sequence[str]) -> None:
    """Raises NotTrainable unless the dataset's fields include every one of REQUIRED_FIELDS."""
    missing = [field for field in REQUIRED_FIELDS if field not in fields]
    if missing:
        raise NotTrainable(
            f"the matching head trains on rated phrase pairs; the dataset has no field "
            f"{', '.join(map(repr, missing))}"
        )


def prepare_pairs(
    rows: Sequence[Mapping[str, object]],
    id_field: str,
    anchors: RecordEmbeddings,
    targets: RecordEmbeddings,
) -> PreparedData:
    """Training and held-out pairs: features (pairs, 2, 384) float32, targets the human scores.

    Raises NotTrainable for a missing field, a score outside [0, 1], a split other than train / valid,
    vectors of another model or width, or an empty side of the split.
    """
    if rows:
        check_pair_fields(tuple(rows[0]))
    for embeddings in (anchors, targets):
        if embeddings.model_id != MODEL_ID or embeddings.vectors.shape[1] != EMBEDDING_DIM:
            raise NotTrainable(
                f"its {'+'.join(embeddings.fields)} vectors were made by {embeddings.model_id} "
                f"({embeddings.vectors.shape[1]} wide); the matching head takes {MODEL_ID}'s "
                f"{EMBEDDING_DIM}-d vectors: import it again with --embed-each anchor,target"
            )
    anchor_at = {record_id: position for position, record_id in enumerate(anchors.record_ids)}
    target_at = {record_id: position for position, record_id in enumerate(targets.record_ids)}
    sides: dict[str, tuple[list[int], list[int], list[float]]] = {split: ([], [], []) for split in SPLITS}
    for number, row in enumerate(rows, start=1):
        record_id = str(row[id_field])
        split = row["split"]
        if split not in SPLITS:
            raise NotTrainable(f"row {number}: split {split!r} is not one of {', '.join(SPLITS)}")
        score = _score(row["score"], number)
        if record_id in anchor_at and record_id in target_at:
            anchor_rows, target_rows, scores = sides[str(split)]
            anchor_rows.append(anchor_at[record_id])
            target_rows.append(target_at[record_id])
            scores.append(score)
    train, held_out = sides["train"], sides["valid"]
    if not train[2] or not held_out[2]:
        raise NotTrainable(
            f"the dataset gives {len(train[2])} training and {len(held_out[2])} held-out pairs with both "
            "phrases embedded; both must be non-empty"
        )
    return PreparedData(
        train_features=_pairs(anchors, targets, train),
        train_targets=np.asarray(train[2], dtype=np.float32),
        held_out_features=_pairs(anchors, targets, held_out),
        held_out_targets=np.asarray(held_out[2], dtype=np.float32),
    )


def _pairs(
    anchors: RecordEmbeddings, targets: RecordEmbeddings, side: tuple[list[int], list[int], list[float]]
) -> np.ndarray:
    anchor_rows, target_rows, _ = side
    return np.ascontiguousarray(
        np.stack([anchors.vectors[anchor_rows], targets.vectors[target_rows]], axis=1), dtype=np.float32
    )


def _score(value: object, number: int) -> float:
    try:
        score = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise NotTrainable(f"row {number}: score {value!r} is not a number") from None
    if not (math.isfinite(score) and 0 <= score <= 1):
        raise NotTrainable(f"row {number}: score {score} is outside [0, 1]")
    return score

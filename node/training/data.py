"""A node's training data for the valuation model: features and targets of its own rows, split and cached.

Every node holds its share of one global held-out split (`models.valuation.split`, a hash of the record id),
so no node needs to talk to another to know which of its rows are held out. Targets are normalised within the
node's own (technology field x filing year) cohorts, computed from its training rows only; held-out rows are
scored against those same training-row cohorts, so no held-out citation count leaks into a target. (A secure,
data-space-wide cohort total would give every node the pooled cohorts; bench/valuation.py measures what the
node-local cohorts cost.)

Features and targets are computed once per dataset version (its source digest and row count) and reference
year, then kept: a job's rounds all train on the same arrays.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from models.valuation.features import feature_matrix
from models.valuation.split import split_rows
from models.valuation.target import cohort_stats, normalised_targets

LENS_ID_FIELD = "lens_id"
# A dataset must carry these to train the valuation model on it (the rest of the Lens columns are optional).
REQUIRED_FIELDS = ("lens_id", "cited_count", "publication_date", "jurisdiction")


class NotTrainable(ValueError):
    """The dataset cannot train this model: its fields are not those of a Lens patent-family export."""


@dataclass(frozen=True)
class PreparedData:
    """A task's examples at one node: valuation features (rows, 21), or matching pairs (pairs, 2, 384)."""

    train_features: np.ndarray  # float32 (examples, *example shape)
    train_targets: np.ndarray  # float32 (rows,)
    held_out_features: np.ndarray
    held_out_targets: np.ndarray


def prepare(rows: Sequence[Mapping[str, object]], *, reference_year: int) -> PreparedData:
    """Split `rows`, normalise their targets within the training rows' cohorts and compute the features.

    Raises NotTrainable when the rows lack a required field or either side of the split is empty.
    """
    text_rows = [_as_text(row) for row in rows]
    if text_rows:
        missing = [field for field in REQUIRED_FIELDS if field not in text_rows[0]]
        if missing:
            raise NotTrainable(f"the dataset has no field {', '.join(map(repr, missing))}")
    train, held_out = split_rows(text_rows, id_field=LENS_ID_FIELD)
    if not train or not held_out:
        raise NotTrainable(
            f"the dataset's {len(text_rows)} rows give {len(train)} training and {len(held_out)} "
            "held-out rows; both must be non-empty"
        )
    stats = cohort_stats(train)
    return PreparedData(
        train_features=feature_matrix(train, reference_year=reference_year).astype(np.float32),
        train_targets=normalised_targets(train, stats).astype(np.float32),
        held_out_features=feature_matrix(held_out, reference_year=reference_year).astype(np.float32),
        held_out_targets=normalised_targets(held_out, stats).astype(np.float32),
    )


class PreparedDataCache:
    """Prepared data per key (the task, the dataset's version and the settings the preparation reads);
    thread-safe, one preparation at a time."""

    def __init__(self, max_entries: int = 8) -> None:
        self._entries: dict[tuple[object, ...], PreparedData] = {}
        self._lock = threading.Lock()
        self._max_entries = max_entries

    def get(self, key: tuple[object, ...], prepare_data: Callable[[], PreparedData]) -> PreparedData:
        """The data kept under `key`, prepared (and kept) on first use; raises what `prepare_data` raises."""
        with self._lock:
            prepared = self._entries.get(key)
            if prepared is None:
                prepared = prepare_data()
                if len(self._entries) >= self._max_entries:
                    self._entries.pop(next(iter(self._entries)))
                self._entries[key] = prepared
            return prepared


def _as_text(row: Mapping[str, object]) -> dict[str, str]:
    """The row as the CSV text the valuation code reads (the store gives typed values, None for empty)."""
    return {name: "" if value is None else str(value) for name, value in row.items()}

"""The one global held-out split of valuation training, computed by every node from record ids alone.

A row is held out when the SHA-256 of its record id (the Lens family's `lens_id`), read as a number in
[0, 1), falls below `HELD_OUT_FRACTION`. Nodes never exchange ids or rows to agree on the split: each one
applies the same rule to its own rows, and the union of their held-out shares is the split a central
holder of all rows would draw. The hash input is prefixed with a fixed domain label, so this split is
independent of any other use of SHA-256 over the same ids (and a new label gives a new split).

Properties. Deterministic across processes, machines and row order; a record stays on its side when other
rows are added or removed; about `HELD_OUT_FRACTION` of any large set of distinct ids is held out (1,148 of
the 5,884 drone families, 19.5%; between 19.3% and 19.6% of each provider's share). The split is not
secret: anyone who knows an id can tell its side, which is harmless because the side says nothing about
the row's values.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from models.valuation.lens_fields import Row

__all__ = ["HELD_OUT_FRACTION", "ID_FIELD", "held_out_position", "is_held_out", "split_rows"]

HELD_OUT_FRACTION = 0.2
ID_FIELD = "lens_id"

_DOMAIN = b"ipspace/valuation/held-out/v1\x00"
_POSITION_BYTES = 8  # 64 bits: the position's resolution is far finer than any fraction we would choose
_THRESHOLD = round(HELD_OUT_FRACTION * 2 ** (8 * _POSITION_BYTES))


def held_out_position(record_id: str) -> float:
    """Where the id falls in [0, 1): the first 64 bits of SHA-256(domain || id) over 2**64.

    The id is stripped of surrounding whitespace first (CSV cells sometimes carry it), so " X " and "X" are
    the same record. Raises TypeError for a non-str id and ValueError for an empty one: a row without an id
    cannot be placed consistently, and silently sending every id-less row to one side would skew the split.
    """
    return _position(record_id) / 2 ** (8 * _POSITION_BYTES)


def is_held_out(record_id: str) -> bool:
    """Whether the record belongs to the global held-out split (exactly: position < HELD_OUT_FRACTION).

    Raises as `held_out_position` does.
    """
    return _position(record_id) < _THRESHOLD


def split_rows(rows: Iterable[Row], id_field: str = ID_FIELD) -> tuple[list[Row], list[Row]]:
    """The rows split into (train, held_out), each in input order.

    Raises ValueError naming the 1-based row number when a row has no id in `id_field`.
    """
    train: list[Row] = []
    held_out: list[Row] = []
    for number, row in enumerate(rows, start=1):
        record_id = row.get(id_field)
        if not isinstance(record_id, str) or not record_id.strip():
            raise ValueError(
                f"row {number} has no {id_field!r}: without a record id it cannot be placed in the "
                "held-out split the other nodes compute"
            )
        (held_out if is_held_out(record_id) else train).append(row)
    return train, held_out


def _position(record_id: str) -> int:
    if not isinstance(record_id, str):
        raise TypeError(f"a record id must be a str, got {type(record_id).__name__}")
    text = record_id.strip()
    if not text:
        raise ValueError("a record id must not be empty")
    digest = hashlib.sha256(_DOMAIN + text.encode("utf-8")).digest()
    return int.from_bytes(digest[:_POSITION_BYTES], "big")

"""The global held-out split: the same for every node and every order, about a fifth of the real ids."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.valuation.split import (
    HELD_OUT_FRACTION,
    ID_FIELD,
    held_out_position,
    is_held_out,
    split_rows,
)
from node.partition import partition_by_jurisdiction, read_rows

LENS_SAMPLE = Path(__file__).resolve().parents[2] / "data" / "lens_drone_families.csv.gz"
TOLERANCE = 0.02  # the held-out share may differ from HELD_OUT_FRACTION by 2 percentage points


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    return read_rows(LENS_SAMPLE)[1]


def test_the_held_out_share_of_the_real_ids_is_the_fraction(rows: list[dict[str, str]]) -> None:
    train, held_out = split_rows(rows)
    assert len(train) + len(held_out) == len(rows)
    assert abs(len(held_out) / len(rows) - HELD_OUT_FRACTION) <= TOLERANCE


def test_each_provider_holds_about_the_fraction_of_its_rows(rows: list[dict[str, str]]) -> None:
    for partition in partition_by_jurisdiction(rows, 3):
        _train, held_out = split_rows(partition.rows)
        assert abs(len(held_out) / partition.row_count - HELD_OUT_FRACTION) <= TOLERANCE, partition.provider


def test_nodes_splitting_their_own_shares_get_the_central_split(rows: list[dict[str, str]]) -> None:
    _train, central = split_rows(rows)
    by_nodes = [row for part in partition_by_jurisdiction(rows, 3) for row in split_rows(part.rows)[1]]
    assert {row[ID_FIELD] for row in by_nodes} == {row[ID_FIELD] for row in central}


def test_the_split_does_not_depend_on_row_order(rows: list[dict[str, str]]) -> None:
    shuffled = list(rows)
    random.Random(7).shuffle(shuffled)
    assert {r[ID_FIELD] for r in split_rows(shuffled)[1]} == {r[ID_FIELD] for r in split_rows(rows)[1]}
    train, held_out = split_rows(shuffled)
    assert train == [row for row in shuffled if not is_held_out(row[ID_FIELD])]  # input order kept
    assert held_out == [row for row in shuffled if is_held_out(row[ID_FIELD])]


def reference_position(record_id: str) -> float:
    """A literal reading of the rule: the first 8 bytes of SHA-256(label || id), big-endian, over 2**64."""
    digest = hashlib.sha256(b"ipspace/valuation/held-out/v1\x00" + record_id.strip().encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def test_a_real_id_falls_where_the_documented_hash_puts_it() -> None:
    record_id = "062-291-696-337-99X"
    assert held_out_position(record_id) == reference_position(record_id)
    assert is_held_out(record_id) == (reference_position(record_id) < HELD_OUT_FRACTION)


@given(st.text(min_size=1).filter(str.strip))
def test_any_id_falls_where_the_documented_hash_puts_it(record_id: str) -> None:
    position = reference_position(record_id)
    assert held_out_position(record_id) == position
    assert is_held_out(record_id) == (position < HELD_OUT_FRACTION)
    assert is_held_out(f"  {record_id}\t") == is_held_out(record_id)  # surrounding spaces do not matter


def test_the_split_differs_from_an_unlabelled_hash(rows: list[dict[str, str]]) -> None:
    # The domain label makes this split independent of a plain SHA-256 of the ids.
    unlabelled = {
        row[ID_FIELD]
        for row in rows
        if int.from_bytes(hashlib.sha256(row[ID_FIELD].encode()).digest()[:8], "big") / 2**64 < 0.2
    }
    assert unlabelled != {row[ID_FIELD] for row in split_rows(rows)[1]}


@pytest.mark.parametrize("bad", ["", "   "])
def test_an_empty_id_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="empty"):
        is_held_out(bad)


def test_a_non_text_id_is_refused() -> None:
    with pytest.raises(TypeError, match="str"):
        is_held_out(12345)  # type: ignore[arg-type]


def test_a_row_without_an_id_is_refused_by_number() -> None:
    with pytest.raises(ValueError, match="row 2 has no 'lens_id'"):
        split_rows([{"lens_id": "A"}, {"jurisdiction": "US"}])
    with pytest.raises(ValueError, match="row 1 has no 'family'"):
        split_rows([{"lens_id": "A"}], id_field="family")

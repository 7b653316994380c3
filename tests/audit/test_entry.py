"""Audit entries and their leaf bytes: exactly RFC 8785 canonical JSON of the entry plus its index."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.entry import AuditEntry, decode_leaf, encode_leaf, prepare_leaf, timestamp_text
from crypto import canonical_json
from tests.audit._log_helpers import entry

_text = st.text(max_size=40)  # any code points but lone surrogates: controls, quotes, emoji, U+2028...


@st.composite
def entries(draw: st.DrawFn) -> AuditEntry:
    optional = st.none() | _text
    return AuditEntry(
        time=draw(_text),
        node=draw(_text),
        actor=draw(_text),
        org=draw(_text),
        role=draw(_text),
        method=draw(_text),
        decision=draw(st.sampled_from(["allow", "deny"])),
        status=draw(_text),
        reason=draw(_text),
        dataset=draw(optional),
        agreement_id=draw(optional),
        purpose=draw(optional),
        request_digest=draw(optional),
        response_digest=draw(optional),
        charges=draw(st.dictionaries(_text, st.integers(-(2**53) + 1, 2**53 - 1), max_size=4)),
        target=draw(optional),
    )


@settings(max_examples=300, deadline=None)
@given(item=entries(), index=st.integers(0, 2**53 - 1))
def test_leaf_is_canonical_json_of_entry_plus_index(item: AuditEntry, index: int) -> None:
    expected = canonical_json({**item.to_dict(), "index": index})
    assert encode_leaf(item, index) == expected
    assert decode_leaf(expected) == (index, item)


def test_leaf_matches_rfc8785_on_escapes_and_member_order() -> None:
    awkward = "".join(chr(c) for c in range(0x21)) + '"\\/\x7f\u2028\u2029\ufeffé\U0001f600'
    # UTF-16 order puts U+1F600 (D83D DE00) before U+FFFF; code point order would not.
    charges = {"\uffff": 1, "\U0001f600": 2, "a": 3, "\ue000": 4, "": 5}
    item = entry(reason=awkward, purpose=awkward, charges=charges)
    assert encode_leaf(item, 12) == canonical_json({**item.to_dict(), "index": 12})
    assert encode_leaf(item, 12).index("\U0001f600".encode()) < encode_leaf(item, 12).index("\uffff".encode())


def test_leaf_bytes_are_literal_jcs() -> None:
    item = entry(actor="alice", charges={"reveal_records": 3}, reason='say "hi"\n', purpose="é")
    leaf = encode_leaf(item, 7)
    assert leaf.startswith(b'{"actor":"alice","agreement_id":null,"charges":{"reveal_records":3},')
    assert b'"index":7,"method":' in leaf
    assert b'"reason":"say \\"hi\\"\\n"' in leaf
    assert "é".encode() in leaf
    assert b"\n" not in leaf


def test_target_sorts_between_status_and_time_and_is_null_when_unset() -> None:
    assert b'"status":"OK","target":null,"time":' in encode_leaf(entry(), 3)
    assert b'"status":"OK","target":"job-7","time":' in encode_leaf(entry(target="job-7"), 3)


def test_a_leaf_written_before_target_existed_still_decodes_unchanged() -> None:
    old = json.loads(encode_leaf(entry(), 5))
    del old["target"]
    old_leaf = canonical_json(old)
    index, decoded = decode_leaf(old_leaf)
    assert (index, decoded) == (5, entry()) and decoded.target is None
    # The log stores and hashes the leaf bytes as written, so an old leaf keeps its hash.
    assert b"target" not in old_leaf


def test_entry_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="decision"):
        entry(decision="maybe")
    with pytest.raises(ValueError, match="'actor' must be a string"):
        entry(actor=None)
    with pytest.raises(ValueError, match="'reason' must be a string"):
        entry(reason=3)
    with pytest.raises(ValueError, match="'target' must be a string"):
        entry(target=7)
    with pytest.raises(ValueError, match="charge"):
        entry(charges={"reveal_records": True})
    with pytest.raises(ValueError, match="charge"):
        entry(charges={"epsilon": 0.5})


def test_values_outside_json_domain_are_refused_before_queueing() -> None:
    with pytest.raises(ValueError, match="outside"):
        prepare_leaf(entry(charges={"huge": 2**53}))
    with pytest.raises(ValueError, match="lone surrogate"):
        prepare_leaf(entry(reason="\udc80"))
    with pytest.raises(ValueError, match="lone surrogate"):
        prepare_leaf(entry(charges={"\ud800": 1}))
    with pytest.raises(ValueError):
        prepare_leaf(entry()).at(2**53)


def test_decode_leaf_rejects_malformed_leaves() -> None:
    good = json.loads(encode_leaf(entry(), 0))
    cases = {
        b"not json": "not JSON",
        b"[1, 2]": "not a JSON object",
        json.dumps({k: v for k, v in good.items() if k != "index"}).encode(): "no integer index",
        json.dumps({**good, "index": True}).encode(): "no integer index",
        json.dumps({**good, "extra": 1}).encode(): "unknown audit entry fields",
        json.dumps({k: v for k, v in good.items() if k != "actor"}).encode(): "malformed audit entry",
    }
    for leaf, message in cases.items():
        with pytest.raises(ValueError, match=message):
            decode_leaf(leaf)


def test_to_dict_is_a_copy() -> None:
    item = entry(charges={"reveal_records": 3})
    data = item.to_dict()
    data["charges"]["reveal_records"] = 99
    assert item.charges == {"reveal_records": 3}


def test_timestamp_text_is_utc_with_z() -> None:
    at = datetime(2025, 3, 1, 13, 0, 0, 5, tzinfo=timezone(timedelta(hours=1)))
    assert timestamp_text(at) == "2025-03-01T12:00:00.000005Z"
    assert timestamp_text().endswith("Z")
    with pytest.raises(ValueError):
        timestamp_text(datetime(2025, 1, 1))  # naive on purpose

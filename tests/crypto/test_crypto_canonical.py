"""Canonical JSON against RFC 8785's own examples, and the digest built on it."""

from __future__ import annotations

import hashlib
import json

import pytest

from crypto import canonical_json, digest


def test_rfc8785_section_3_2_2_example():
    # RFC 8785 §3.2.2: the input as a JSON text, and the canonical output the RFC gives for it.
    source = r"""{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }"""
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    ).encode()
    assert canonical_json(json.loads(source)) == expected


def test_rfc8785_section_3_2_3_keys_sort_by_utf16_code_units():
    # U+1F600 is the surrogate pair D83D DE00, so it sorts before U+FB33 (not after, as code points would).
    source = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    keys_in_output = list(json.loads(canonical_json(source)))
    assert keys_in_output == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (1.0, b"1"),
        (-0.0, b"0"),
        (1e21, b"1e+21"),
        (1e20, b"100000000000000000000"),
        (1e-7, b"1e-7"),
        (0.000001, b"0.000001"),
        (0.1 + 0.2, b"0.30000000000000004"),
        (5e-324, b"5e-324"),
        (-1.5e300, b"-1.5e+300"),
        (9007199254740991, b"9007199254740991"),
    ],
)
def test_numbers_are_written_as_ecmascript_does(number, text):
    assert canonical_json(number) == text


def test_strings_keep_unicode_and_escape_only_what_json_requires():
    assert canonical_json("é€😀") == '"é€😀"'.encode()
    assert canonical_json("tab\there\x1f") == b'"tab\\there\\u001f"'
    assert canonical_json("</script>") == b'"</script>"'


def test_nested_objects_are_sorted_and_compact():
    value = {"b": [3, {"z": 1, "a": None}], "a": True}
    assert canonical_json(value) == b'{"a":true,"b":[3,{"a":null,"z":1}]}'


def test_digest_is_sha256_of_the_canonical_bytes_whatever_the_key_order():
    expected = "sha256:" + hashlib.sha256(b'{"a":1,"b":"x"}').hexdigest()
    assert digest({"a": 1.0, "b": "x"}) == expected
    assert digest({"b": "x", "a": 1}) == expected
    assert digest({"a": 1, "b": "y"}) != expected


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 2**53, {1, 2}, b"bytes", {"k": object()}])
def test_values_outside_json_are_refused(value):
    with pytest.raises(ValueError):
        canonical_json(value)

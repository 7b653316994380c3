"""Canonical JSON (RFC 8785, JCS): the exact bytes that are hashed and signed.

Two parties that hold the same JSON value get the same bytes, whatever their key order, number spelling or
escaping, so a signature or digest over an agreement means the same thing to both.
"""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785

DIGEST_PREFIX = "sha256:"


def canonical_json(obj: Any) -> bytes:
    """The RFC 8785 serialization of a JSON value (dict, list, str, int, float, bool, None).

    Raises ValueError (rfc8785.CanonicalizationError) for anything outside JSON's domain: other types,
    NaN or infinities, integers beyond +/-(2**53 - 1). Dump pydantic models with `mode="json"` first.
    """
    return rfc8785.dumps(obj)


def digest(obj: Any) -> str:
    """'sha256:' followed by the lowercase hex SHA-256 of `canonical_json(obj)`."""
    return DIGEST_PREFIX + hashlib.sha256(canonical_json(obj)).hexdigest()

"""What one audit entry says, and the exact leaf bytes that the Merkle tree commits to.

A leaf is the RFC 8785 canonical JSON of the entry's fields plus `index`, its position in the log, so an
entry can not be moved to another position without changing its hash. Entries hold digests of requests and
responses, never the data itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

DECISIONS = ("allow", "deny")
INDEX_KEY = "index"
_MAX_JSON_INTEGER = 2**53 - 1
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def timestamp_text(now: datetime | None = None) -> str:
    """RFC 3339 UTC time with microseconds and a Z, the one time format of entries and tree heads."""
    at = datetime.now(UTC) if now is None else now
    if at.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware (UTC)")
    return at.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


@dataclass(frozen=True)
class AuditEntry:
    """One decision of a node's gate, or one action of the coordinator: who asked what, what was decided,
    what it cost.

    `time` is RFC 3339 UTC (see `timestamp_text`); `decision` is "allow" or "deny"; `status` is what the
    caller saw: the gRPC status code name at a node, the HTTP status code (as text, "201") at the
    coordinator; `charges` maps a budget name to the amount spent by this call; `target` names what the
    action was about when `method` alone does not (a job id, an agreement id, a URL path). Leaves written
    before `target` existed lack it and decode with None.
    """

    time: str
    node: str
    actor: str
    org: str
    role: str
    method: str
    decision: str
    status: str
    reason: str
    dataset: str | None = None
    agreement_id: str | None = None
    purpose: str | None = None
    request_digest: str | None = None
    response_digest: str | None = None
    charges: dict[str, int] = field(default_factory=dict)
    target: str | None = None

    def __post_init__(self) -> None:
        if self.decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, got {self.decision!r}")
        for name in _FIELD_NAMES:
            value = getattr(self, name)
            if name == "charges":
                _check_charges(value)
            elif not (isinstance(value, str) or (value is None and name in _OPTIONAL_FIELDS)):
                raise ValueError(f"audit entry field {name!r} must be a string, got {type(value).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """The entry as a JSON object (a fresh dict; `charges` copied)."""
        # Not dataclasses.asdict: its recursive deep copy costs more than the rest of an append.
        data = {name: getattr(self, name) for name in _FIELD_NAMES}
        data["charges"] = dict(self.charges)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditEntry:
        """Rebuild an entry from `to_dict` output; raise ValueError naming a missing or unknown field."""
        unknown = set(data) - set(_FIELD_NAMES)
        if unknown:
            raise ValueError(f"unknown audit entry fields: {sorted(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"malformed audit entry: {exc}") from None


@dataclass(frozen=True)
class PreparedLeaf:
    """An entry canonicalized up to its index, so the costly part runs before the index is known.

    RFC 8785 writes an object's members sorted by name, comma separated, without whitespace, and each member
    independently of the others; so the canonical JSON of the entry plus `index` is the members sorting
    before "index", then `"index":<decimal>`, then the members sorting after it.
    """

    before: bytes
    after: bytes

    def at(self, index: int) -> bytes:
        """The leaf bytes for this entry stored at `index`."""
        if not 0 <= index <= _MAX_JSON_INTEGER:
            raise ValueError(f"leaf index {index} is outside 0..2**53-1")
        members = (self.before, b'"' + INDEX_KEY.encode() + b'":' + str(index).encode(), self.after)
        return b"{" + b",".join(member for member in members if member) + b"}"


def prepare_leaf(entry: AuditEntry) -> PreparedLeaf:
    r"""Canonicalize `entry` for `PreparedLeaf.at`; raise ValueError for text that is not valid Unicode.

    The bytes equal `crypto.canonical_json` (RFC 8785) for every value an AuditEntry admits (strings, None,
    and str -> int charges within +/-(2**53 - 1)), at the speed of the C JSON encoder, which the append path
    needs (the pure-Python RFC 8785 encoder took about a quarter of an append's CPU time). For those values
    both write the same tokens: strings with \" \\ \b \f \n \r \t, other control characters as lowercase
    \u00xx and everything else literally; integers in decimal; null. The one rule to add is RFC 8785's member
    order (by UTF-16 code units), applied below. tests/audit/test_entry.py checks the equality on random
    entries.
    """
    data = entry.to_dict()
    charges = data["charges"]
    data["charges"] = {name: charges[name] for name in sorted(charges, key=_utf16_units)}
    before = {name: data[name] for name in _NAMES_BEFORE_INDEX}
    after = {name: data[name] for name in _NAMES_AFTER_INDEX}
    try:
        return PreparedLeaf(_members(before), _members(after))
    except UnicodeEncodeError:
        raise ValueError("audit entry text is not valid Unicode (it holds a lone surrogate)") from None


_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False, check_circular=False, separators=(",", ":"))


def _members(ordered: dict[str, Any]) -> bytes:
    """The members of an object whose keys are already in RFC 8785 order, without the braces."""
    return _JSON.encode(ordered)[1:-1].encode("utf-8")


def _utf16_units(name: str) -> bytes:
    # Big-endian UTF-16 bytes compare like the UTF-16 code units RFC 8785 sorts by.
    return name.encode("utf-16-be", "surrogatepass")


_FIELD_NAMES = tuple(item.name for item in fields(AuditEntry))
_OPTIONAL_FIELDS = frozenset(item.name for item in fields(AuditEntry) if item.default is None)
# Field names are ASCII, so code point order is RFC 8785's order for them.
_NAMES_BEFORE_INDEX = tuple(sorted(name for name in _FIELD_NAMES if name < INDEX_KEY))
_NAMES_AFTER_INDEX = tuple(sorted(name for name in _FIELD_NAMES if name > INDEX_KEY))


def encode_leaf(entry: AuditEntry, index: int) -> bytes:
    """The leaf bytes for `entry` stored at `index`: canonical JSON of its fields plus the index."""
    return prepare_leaf(entry).at(index)


def decode_leaf(leaf: bytes) -> tuple[int, AuditEntry]:
    """Return (embedded index, entry) of a leaf; raise ValueError if it is not a well-formed entry leaf."""
    try:
        data = json.loads(leaf)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"leaf is not JSON: {exc}") from None
    except RecursionError:
        raise ValueError("leaf nests too deeply to be an audit entry") from None
    if not isinstance(data, dict):
        raise ValueError("leaf is not a JSON object")
    index = data.pop(INDEX_KEY, None)
    if not isinstance(index, int) or isinstance(index, bool):
        raise ValueError("leaf has no integer index")
    return index, AuditEntry.from_dict(data)


def _check_charges(charges: object) -> None:
    if not isinstance(charges, dict):
        raise ValueError("audit entry charges must be a dict of budget name to integer amount")
    for name, amount in charges.items():
        if not isinstance(name, str) or not isinstance(amount, int) or isinstance(amount, bool):
            raise ValueError(f"audit entry charge {name!r} must map a string to an integer")
        if not -_MAX_JSON_INTEGER <= amount <= _MAX_JSON_INTEGER:
            raise ValueError(f"audit entry charge {name!r} is outside +/-(2**53 - 1)")

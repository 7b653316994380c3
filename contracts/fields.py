"""Field types every contract model shares, and how a failed validation reads.

Times are UTC and serialise in one fixed format, so a model read back from its JSON has the same digest.
Integers stay within what canonical JSON (IEEE doubles) carries exactly; text must be valid Unicode.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer, ValidationError

MAX_JSON_INT = 2**53 - 1  # canonical JSON numbers are IEEE doubles: larger integers would not survive it
_T = TypeVar("_T")


def _as_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("a time must carry its time zone, e.g. 2026-01-31T00:00:00Z")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range once converted to UTC") from None


def utc_text(value: datetime) -> str:
    """The one serialised form of a time: UTC, microseconds, 'Z' (e.g. 2026-01-31T00:00:00.000000Z)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _clean_text(value: str) -> str:
    if value != value.strip():
        raise ValueError("must not start or end with spaces")
    return _unicode_text(value)


def _unicode_text(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: canonical JSON could not encode them
        raise ValueError("contains characters that are not valid Unicode") from None
    return value


def distinct(values: tuple[_T, ...]) -> tuple[_T, ...]:
    """Validator: refuse a list that names an entry twice."""
    duplicates = sorted({str(value) for value in values if values.count(value) > 1})
    if duplicates:
        raise ValueError(f"lists {', '.join(duplicates)} more than once")
    return values


def not_empty(values: tuple[_T, ...]) -> tuple[_T, ...]:
    """Validator: refuse an empty list, which would be ambiguous next to an absent one."""
    if not values:
        raise ValueError("must list at least one entry (leave the field out for no limit)")
    return values


UtcDatetime = Annotated[
    datetime, AfterValidator(_as_utc), PlainSerializer(utc_text, return_type=str, when_used="json")
]
Name = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_clean_text)]
FreeText = Annotated[str, Field(max_length=4000), AfterValidator(_unicode_text)]
FieldName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]{0,127}$")]
OfferId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
Digest = Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
Limit = Annotated[int, Field(ge=0, le=MAX_JSON_INT)]
NameList = Annotated[tuple[Name, ...], AfterValidator(distinct), AfterValidator(not_empty)]


class FrozenModel(BaseModel):
    """Base of every contract model: immutable, and an unknown field is an error rather than ignored."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def describe_validation_error(exc: ValidationError) -> str:
    """Pydantic's errors as one line a person can act on: each bad field by its dotted path, and why."""
    problems = []
    for error in exc.errors(include_url=False):
        message = error["msg"].removeprefix("Value error, ")
        where = ".".join(str(part) for part in error["loc"])
        problems.append(f"field {where!r}: {message}" if where else message)
    return "; ".join(problems)

"""The injectable clock: every validity check takes `now`, and tests pass a fixed one."""

from __future__ import annotations

from datetime import UTC, datetime


def resolve_now(now: datetime | None) -> datetime:
    """Return `now` (or the current time) as an aware UTC datetime; a naive `now` raises ValueError."""
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime (UTC)")
    return now.astimezone(UTC)

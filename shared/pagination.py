"""Opaque keyset cursors: the (timestamp, id) of the last row of a page.

Keyset rather than OFFSET so a page costs the same however deep it is and
rows inserted meanwhile neither repeat nor vanish.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from shared.errors import ValidationFailed

__all__ = [
    "Key",
    "KeyPart",
    "after_key",
    "decode_cursor",
    "decode_key",
    "encode_cursor",
    "encode_key",
    "split_page",
]


def encode_cursor(moment: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([moment.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# A cursor this API writes is about 100 characters.
MAX_CURSOR_LENGTH = 256


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    refused = ValidationFailed({"cursor": "not a cursor this API returned"})
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise refused
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        moment, row_id = json.loads(base64.urlsafe_b64decode(padded))
        parsed = datetime.fromisoformat(moment)
        if parsed.tzinfo is None:
            raise ValueError("naive time")
        # In UTC here, so no driver ever converts an out-of-range time.
        return parsed.astimezone(UTC), uuid.UUID(row_id)
    except (ValueError, TypeError, RecursionError, OverflowError):
        raise refused from None


Key = tuple[datetime, uuid.UUID]
Row = TypeVar("Row")


def after_key(cursor: str | None) -> Key | None:
    """The key a page starts after; None for the first page."""
    return decode_cursor(cursor) if cursor else None


def split_page(
    rows: Sequence[Row], limit: int, key: Callable[[Row], Key]
) -> tuple[list[Row], str | None]:
    """The page (rows were fetched with ``limit + 1``) and the cursor of the next one."""
    page = list(rows[:limit])
    more = len(rows) > limit
    return page, encode_cursor(*key(page[-1])) if more else None


# Keys of more than (timestamp, id): the leaderboard's (points, reached_at, id),
# the notes list's (updated_at, file_id). Same opaque form, one JSON list.
KeyPart = int | datetime | uuid.UUID


def encode_key(*parts: KeyPart) -> str:
    """An opaque cursor for a keyset of any of these parts (see ``decode_key``)."""
    values = [part.isoformat() if isinstance(part, datetime) else str(part) for part in parts]
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def decode_key(cursor: str, kinds: Sequence[type[KeyPart]]) -> tuple[KeyPart, ...]:
    """The parts ``encode_key`` wrote, read back as ``kinds``; anything else is a 422."""
    refused = ValidationFailed({"cursor": "not a cursor this API returned"})
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise refused
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded))
        if not isinstance(values, list) or len(values) != len(kinds):
            raise ValueError("wrong shape")
        return tuple(_key_part(kind, value) for kind, value in zip(kinds, values, strict=True))
    except (ValueError, TypeError, RecursionError, OverflowError):
        raise refused from None


def _key_part(kind: type[KeyPart], value: object) -> KeyPart:
    if not isinstance(value, str):
        raise TypeError("not a string")
    if kind is datetime:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            raise ValueError("naive time")
        return moment.astimezone(UTC)
    if kind is uuid.UUID:
        return uuid.UUID(value)
    if kind is int:
        # The database's integer range, so no driver ever sees an oversized one.
        number = int(value)
        if not -(2**63) <= number < 2**63:
            raise ValueError("out of range")
        return number
    raise TypeError(f"not a key part: {kind}")

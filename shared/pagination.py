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

__all__ = ["Key", "after_key", "decode_cursor", "encode_cursor", "split_page"]


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

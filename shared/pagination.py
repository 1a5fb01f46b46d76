"""Opaque keyset cursors: the (timestamp, id) of the last row of a page.

Keyset rather than OFFSET so a page costs the same however deep it is and
rows inserted meanwhile neither repeat nor vanish.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime

from shared.errors import ValidationFailed

__all__ = ["decode_cursor", "encode_cursor"]


def encode_cursor(moment: datetime, row_id: uuid.UUID) -> str:
    raw = json.dumps([moment.isoformat(), str(row_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        moment, row_id = json.loads(base64.urlsafe_b64decode(padded))
        return datetime.fromisoformat(moment), uuid.UUID(row_id)
    except (ValueError, TypeError):
        raise ValidationFailed({"cursor": "not a cursor this API returned"}) from None

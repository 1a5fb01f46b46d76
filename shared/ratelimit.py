"""Per-user rate limits in PostgreSQL: a counter per fixed time window.

One statement per check: the window's row is inserted or incremented and the
new count returned; the same statement drops the user's windows older than a
day, so the table stays small without a sweeper. Functions scale out, so the
count has to live in the shared database rather than in an instance's memory.
The caller commits the count on its own, so refused calls count too.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from shared.errors import RateLimited

__all__ = ["check"]

_COUNT = text(
    """
    WITH purge AS (
        DELETE FROM rate_limit_windows
         WHERE user_id = :user_id AND window_start < CAST(:now AS timestamptz) - interval '1 day'
    )
    INSERT INTO rate_limit_windows (user_id, action, window_start, count)
    VALUES (:user_id, :action, :window_start, 1)
    ON CONFLICT (user_id, action, window_start)
    DO UPDATE SET count = rate_limit_windows.count + 1
    RETURNING count
    """
)


def check(
    session: Session,
    *,
    user_id: uuid.UUID,
    action: str,
    limit: int,
    window: timedelta,
    now: datetime,
) -> None:
    """Count this call; ``RateLimited`` (429, with Retry-After) past ``limit`` per window."""
    seconds = window.total_seconds()
    start = datetime.fromtimestamp(math.floor(now.timestamp() / seconds) * seconds, now.tzinfo)
    count = session.scalar(
        _COUNT,
        {"user_id": user_id, "action": action, "window_start": start, "now": now},
    )
    if count is not None and count > limit:
        retry_after = max(1, math.ceil((start + window - now).total_seconds()))
        raise RateLimited(
            f"too many {action} requests: at most {limit} per {int(seconds)} s",
            headers={"Retry-After": str(retry_after)},
        )

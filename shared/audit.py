"""The audit log: who changed what, append-only (triggers refuse UPDATE and DELETE).

Every admin write records one row **in the same transaction as the change**
(callers pass their session), so a change and its record commit or fail
together. The CLI writes with no actor row (``actor_id`` null, ``actor_name``
saying which command).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, tuple_
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql import cast

from shared.db.models import AuditLog
from shared.pagination import after_key, split_page

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from shared.db.models import User

__all__ = ["list_entries", "record", "to_json"]


def record(
    session: Session,
    *,
    actor: User | None,
    action: str,
    target_type: str,
    target_ids: list[uuid.UUID] | list[str],
    meta: dict[str, Any] | None = None,
    actor_name: str | None = None,
) -> AuditLog:
    """Add one audit row to the caller's transaction (flushed, so a bad row fails now)."""
    entry = AuditLog(
        actor_id=actor.id if actor is not None else None,
        actor_name=actor_name or (actor.name or actor.email if actor is not None else "system"),
        action=action,
        target_type=target_type,
        target_ids=[str(target) for target in target_ids],
        meta_data=meta or {},
    )
    session.add(entry)
    session.flush()
    return entry


def to_json(entry: AuditLog) -> dict[str, Any]:
    return {
        "id": entry.id,
        "timestamp": entry.timestamp,
        "actor_id": entry.actor_id,
        "actor_name": entry.actor_name,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_ids": entry.target_ids,
        "meta_data": entry.meta_data,
    }


def list_entries(
    session: Session,
    *,
    actor_id: uuid.UUID | None = None,
    action: str | None = None,
    target_id: uuid.UUID | None = None,
    before: datetime | None = None,
    limit: int,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first, one keyset page: rows sharing a timestamp are ordered by id
    and never skipped or repeated."""
    statement = (
        select(AuditLog).order_by(AuditLog.timestamp.desc(), AuditLog.id.desc()).limit(limit + 1)
    )
    if actor_id is not None:
        statement = statement.where(AuditLog.actor_id == actor_id)
    if action is not None:
        statement = statement.where(AuditLog.action == action)
    if target_id is not None:
        # Served by the GIN index on target_ids.
        statement = statement.where(AuditLog.target_ids.contains(cast([str(target_id)], JSONB)))
    if before is not None:
        statement = statement.where(AuditLog.timestamp < before)
    after = after_key(cursor)
    if after is not None:
        statement = statement.where(tuple_(AuditLog.timestamp, AuditLog.id) < tuple_(*after))
    rows = session.scalars(statement).all()
    page, next_cursor = split_page(rows, limit, lambda entry: (entry.timestamp, entry.id))
    return [to_json(entry) for entry in page], next_cursor

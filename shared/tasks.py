"""The learning plan: a user's study tasks by calendar day."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared.db.models import UserTask

__all__ = ["get_task", "list_tasks", "task_to_json"]


def task_to_json(task: UserTask) -> dict[str, Any]:
    return {
        "id": task.id,
        "title": task.title,
        "date": task.date,
        "start_hour": task.start_hour,
        "duration": task.duration,
        "priority": task.priority,
        "completed": task.completed,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
    }


def list_tasks(
    session: Session, *, user_id: uuid.UUID, first: date, last: date
) -> list[dict[str, Any]]:
    """Tasks dated first..last inclusive, by date then start hour (served by (user_id, date))."""
    tasks = session.scalars(
        select(UserTask)
        .where(UserTask.user_id == user_id, UserTask.date.between(first, last))
        .order_by(UserTask.date, UserTask.start_hour, UserTask.created_at, UserTask.id)
    )
    return [task_to_json(task) for task in tasks]


def get_task(session: Session, *, user_id: uuid.UUID, task_id: uuid.UUID) -> UserTask | None:
    """The user's own task, locked for change; another user's is indistinguishable from none."""
    return session.scalar(
        select(UserTask)
        .where(UserTask.id == task_id, UserTask.user_id == user_id)
        .with_for_update()
    )

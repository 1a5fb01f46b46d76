"""The learning plan: a user's study tasks by calendar day, study plans and the calendar export.

A task's ``date`` and ``start_hour`` are wall-clock time with no zone, as the
student wrote them; a study plan reads "now" in the caller's zone, and the
calendar export turns them into UTC in the zone it is asked for.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.orm import Session

from shared.db.models import Material, ReadingProgress, UserTask
from shared.errors import Conflict
from shared.planner import slots_of_task
from shared.reading import required_seconds

__all__ = [
    "FileLeft",
    "NotEnoughTime",
    "calendar_ics",
    "get_task",
    "list_tasks",
    "overlapping",
    "reading_left",
    "remove_plan_ahead",
    "study_slots",
    "taken_slots",
    "task_to_json",
    "tasks_between",
]


class NotEnoughTime(Conflict):
    """409: the plan does not fit before the exam; nothing was created."""

    default_code = "not_enough_time"

    def __init__(self, shortfall_minutes: int, earliest_exam_date: date | None) -> None:
        super().__init__(
            f"the plan needs {shortfall_minutes} more minutes than fit before the exam"
        )
        self.shortfall_minutes = shortfall_minutes
        self.earliest_exam_date = earliest_exam_date

    def to_body(self, request_id: str | None = None) -> dict[str, object]:
        # The two facts a client needs to offer a fix sit beside code and message.
        body = super().to_body(request_id)
        error = body["error"]
        assert isinstance(error, dict)
        error["shortfall_minutes"] = self.shortfall_minutes
        error["earliest_exam_date"] = (
            self.earliest_exam_date.isoformat() if self.earliest_exam_date else None
        )
        return body


def task_to_json(task: UserTask) -> dict[str, Any]:
    return {
        "id": task.id,
        "title": task.title,
        "date": task.date,
        "start_hour": task.start_hour,
        "duration": task.duration,
        "priority": task.priority,
        "completed": task.completed,
        "file_id": task.file_id,
        "plan_id": task.plan_id,
        "course_id": task.course_id,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
    }


def list_tasks(
    session: Session, *, user_id: uuid.UUID, first: date, last: date
) -> list[dict[str, Any]]:
    """Tasks dated first..last inclusive, by date then start hour (served by (user_id, date))."""
    return [task_to_json(task) for task in tasks_between(session, user_id, first, last)]


def tasks_between(
    session: Session, user_id: uuid.UUID, first: date, last: date
) -> Sequence[UserTask]:
    return session.scalars(
        select(UserTask)
        .where(UserTask.user_id == user_id, UserTask.date.between(first, last))
        .order_by(UserTask.date, UserTask.start_hour, UserTask.created_at, UserTask.id)
    ).all()


def get_task(session: Session, *, user_id: uuid.UUID, task_id: uuid.UUID) -> UserTask | None:
    """The user's own task, locked for change; another user's is indistinguishable from none."""
    return session.scalar(
        select(UserTask)
        .where(UserTask.id == task_id, UserTask.user_id == user_id)
        .with_for_update()
    )


def overlapping(session: Session, task: UserTask) -> list[dict[str, Any]]:
    """The owner's other tasks on the same day whose time intersects this one's."""
    end = task.start_hour + task.duration
    others = session.scalars(
        select(UserTask)
        .where(
            UserTask.user_id == task.user_id,
            UserTask.date == task.date,
            UserTask.id != task.id,
            UserTask.start_hour < end,
            UserTask.start_hour + UserTask.duration > task.start_hour,
        )
        .order_by(UserTask.start_hour, UserTask.created_at, UserTask.id)
    )
    return [task_to_json(other) for other in others]


@dataclass(frozen=True)
class FileLeft:
    """A published file of the course the user has not completed, and the reading it still needs."""

    file_id: uuid.UUID
    title: str
    seconds: int


def reading_left(session: Session, *, user_id: uuid.UUID, course_id: uuid.UUID) -> list[FileLeft]:
    """The course's published files the user has not completed, in the course's natural order.

    Natural order: academic year, material year, title (then id, for ties).
    Credited seconds are the user's reading progress on the file, the one
    count every session of theirs adds to (resume).
    """
    credited = (
        select(
            ReadingProgress.file_id,
            ReadingProgress.active_seconds.label("seconds"),
            ReadingProgress.is_complete.label("complete"),
        )
        .where(ReadingProgress.user_id == user_id)
        .subquery()
    )
    rows = session.execute(
        select(Material.id, Material.title, Material.page_count, credited.c.seconds)
        .outerjoin(credited, credited.c.file_id == Material.id)
        .where(
            Material.course_id == course_id,
            Material.is_published,
            or_(credited.c.complete.is_(None), credited.c.complete.is_(False)),
        )
        .order_by(Material.academic_year, Material.material_year, Material.title, Material.id)
    ).all()
    left = []
    for row in rows:
        seconds = required_seconds(row.page_count) - (row.seconds or 0)
        if seconds > 0:
            left.append(FileLeft(row.id, row.title, seconds))
    return left


def remove_plan_ahead(
    session: Session, *, user_id: uuid.UUID, course_id: uuid.UUID, today: date, now_hour: float
) -> int:
    """Delete the course's plan tasks that start now or later and are not completed.

    Hand-made tasks (no plan_id), completed ones and those already under way stay.
    """
    result = session.execute(
        delete(UserTask)
        .where(
            UserTask.user_id == user_id,
            UserTask.course_id == course_id,
            UserTask.plan_id.is_not(None),
            UserTask.completed.is_(False),
            or_(
                UserTask.date > today,
                and_(UserTask.date == today, UserTask.start_hour >= now_hour),
            ),
        )
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def taken_slots(
    intervals: Iterable[tuple[date, float, float]],
) -> dict[date, frozenset[int]]:
    """Half-hour slots touched by (date, start_hour, duration) intervals, by day."""
    taken: dict[date, set[int]] = defaultdict(set)
    for day, start_hour, duration in intervals:
        taken[day].update(slots_of_task(start_hour, duration))
    return {day: frozenset(slots) for day, slots in taken.items()}


def study_slots(tasks: Iterable[UserTask]) -> dict[date, int]:
    """Slots of plan tasks (any plan) by day: study the daily budget already holds."""
    used: dict[date, int] = defaultdict(int)
    for task in tasks:
        if task.plan_id is not None:
            used[task.date] += len(slots_of_task(task.start_hour, task.duration))
    return dict(used)


# --- The calendar export (RFC 5545) ---

_PRIORITY = {"urgent": 1, "high": 3, "normal": 5}


def _text(value: str) -> str:
    """An iCalendar TEXT value: backslash, semicolon, comma and line breaks escaped."""
    return (
        value.replace("\\", "\\\\")
        .replace(";", "\\;")
        .replace(",", "\\,")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
    )


def _fold(line: str) -> str:
    """Lines of at most 75 octets, continued with CRLF and a space, never splitting a character."""
    pieces: list[str] = []
    current, size, limit = "", 0, 75
    for character in line:
        width = len(character.encode())
        if size + width > limit:
            pieces.append(current)
            # A continuation line starts with the space, which counts toward its 75.
            current, size, limit = "", 0, 74
        current += character
        size += width
    pieces.append(current)
    return "\r\n ".join(pieces)


def _utc(day: date, hours: float, zone: ZoneInfo) -> str:
    # Wall-clock time in the zone (24.0 hours is the next day's midnight); the
    # zone gives the offset in force then, DST included.
    local = (datetime.combine(day, time()) + timedelta(hours=hours)).replace(tzinfo=zone)
    return local.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def calendar_ics(tasks: Iterable[UserTask], zone: ZoneInfo, stamp: datetime) -> str:
    """The tasks as one VCALENDAR, their times read in ``zone`` and written in UTC.

    UTC times need no VTIMEZONE block, which every calendar app would have to
    trust; the UID is the task's id, so a re-import updates events in place.
    """
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//Lectern//Study tasks//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
    ]
    dtstamp = stamp.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    for task in tasks:
        lines += [
            "BEGIN:VEVENT",
            f"UID:{task.id}@lectern",
            f"DTSTAMP:{dtstamp}",
            f"DTSTART:{_utc(task.date, task.start_hour, zone)}",
            f"DTEND:{_utc(task.date, task.start_hour + task.duration, zone)}",
            f"SUMMARY:{_text(task.title)}",
            f"PRIORITY:{_PRIORITY.get(task.priority, 0)}",
            f"LAST-MODIFIED:{task.updated_at.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}",
        ]
        if task.completed:
            lines.append("CATEGORIES:Completed")
        if task.file_id is not None:
            lines.append(f"X-LECTERN-FILE-ID:{task.file_id}")
        lines.append("END:VEVENT")
    lines.append("END:VCALENDAR")
    return "".join(_fold(line) + "\r\n" for line in lines)

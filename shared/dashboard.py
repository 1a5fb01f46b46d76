"""The student's home screen in one read: who they are, their rank, the
courses they are reading, their recent files and today's tasks.

The number of SQL statements is fixed, whatever the user's history (the user,
the rank count, the courses in progress, the recent files, the day's tasks):
each part is one statement with its own bound (``COURSES``, ``RECENT``, the
day's tasks), never one per course or file. ``tests/test_dashboard.py``
counts them.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from shared import leaderboard, reading, users
from shared.db.models import User as UserRow
from shared.fields import TimeZone
from shared.responses import Shape, Task, User

__all__ = ["COURSES", "RECENT", "Dashboard", "DashboardQuery", "dashboard"]

# The home screen shows the latest few; /heartbeat/progress and /heartbeat/recent have the rest.
COURSES = 20
RECENT = 10


class DashboardQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tz: TimeZone = Field(default="UTC", description="The caller's IANA time zone, for `today`.")


class Dashboard(Shape):
    user: User
    # The caller's place on the whole leaderboard.
    rank: leaderboard.Rank
    courses: list[reading.CourseSummary] = Field(
        description="Courses started and not completed, most recently read first "
        f"(at most {COURSES}).",
    )
    recent: list[reading.RecentFile] = Field(
        description=f"Recently opened files, most recent first (at most {RECENT}).",
    )
    date: dt.date = Field(description="The caller's local date in `tz`: the day of `today`.")
    today: list[Task] = Field(description="The caller's tasks on that date, by start hour.")


def dashboard(session: Session, *, user: UserRow, tz: str, now: dt.datetime) -> Dashboard:
    # Only this route of the profile function reads tasks (and the planner they import).
    from shared.tasks import list_tasks

    local_day = now.astimezone(ZoneInfo(tz)).date()
    return Dashboard(
        user=users.profile_of(user),
        rank=leaderboard.rank_of(session, user),
        courses=reading.courses_in_progress(session, user_id=user.id, limit=COURSES),
        recent=reading.list_recent(session, user_id=user.id, limit=RECENT),
        date=local_day,
        today=[
            Task.of(task)
            for task in list_tasks(session, user_id=user.id, first=local_day, last=local_day)
        ],
    )

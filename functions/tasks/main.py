"""tasks: the signed-in user's study plan, day by day, plans for an exam, and a calendar export."""

from __future__ import annotations

import math
import re
import uuid
from datetime import date, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo

import flask
import functions_framework
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    model_validator,
)
from sqlalchemy import select

from shared import clock, planner
from shared import tasks as data
from shared.config import Needs
from shared.db.engine import transaction
from shared.db.models import Course, User, UserTask
from shared.errors import NotFound, ValidationFailed
from shared.fields import SingleLineText, TimeZone
from shared.http import Call, build_router, json_response, no_content
from shared.responses import Shape, Task

router = build_router(Needs.NONE)


class TaskList(Shape):
    tasks: list[Task]


class TaskOne(Shape):
    task: Task


class TaskWritten(Shape):
    task: Task
    overlaps: list[Task] = Field(
        description="The caller's other tasks that day whose time intersects this one's."
    )


class PlanMade(Shape):
    tasks: list[Task] = Field(description="The plan's tasks, by date and start.")
    replaced: int = Field(
        description="How many tasks of an earlier plan for the course ahead were removed."
    )


MAX_RANGE_DAYS = 366
DEFAULT_RANGE_DAYS = 7
# A plan looks at most this far ahead (the exam date, and the earliest date
# that would fit): a year of days is a few thousand slot checks.
MAX_PLAN_DAYS = 365
DEFAULT_DAILY_MINUTES = 120
MAX_BUSY_INTERVALS = 500
TITLE_LENGTH = 200


FIRST_YEAR, LAST_YEAR = 1900, 2200


def _calendar_date(value: object) -> object:
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("must be a date written YYYY-MM-DD")
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise ValueError("not a real calendar date") from None
    # Far from date's limits, so a week, a plan or a time zone never overflows.
    if not FIRST_YEAR <= parsed.year <= LAST_YEAR:
        raise ValueError(f"must be between {FIRST_YEAR} and {LAST_YEAR}")
    return parsed


CalendarDate = Annotated[date, BeforeValidator(_calendar_date)]
Title = Annotated[SingleLineText, StringConstraints(min_length=1, max_length=200)]
StartHour = Annotated[StrictFloat, Field(ge=0, le=23.5, multiple_of=0.5)]
Duration = Annotated[StrictFloat, Field(gt=0, le=24)]
Priority = Literal["normal", "high", "urgent"]

EndHour = Annotated[StrictFloat, Field(gt=0, le=24, multiple_of=0.5)]


def _check_fits_the_day(start_hour: float, duration: float, name: str) -> None:
    if start_hour + duration > 24:
        raise ValidationFailed(
            {name: "the task must end by midnight (start_hour + duration <= 24)"}
        )


class NewTask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title
    date: CalendarDate
    start_hour: StartHour
    duration: Duration
    priority: Priority = "normal"


class TaskChanges(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    date: CalendarDate | None = None
    start_hour: StartHour | None = None
    duration: Duration | None = None
    priority: Priority | None = None
    completed: StrictBool | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, value in data.items():
                if value is None:
                    raise ValueError(f"{name}: cannot be null")
        return data


class BusyInterval(BaseModel):
    """Time the plan must keep free, in the caller's wall-clock time (like a task)."""

    model_config = ConfigDict(extra="forbid")

    date: CalendarDate
    start_hour: StartHour
    duration: Duration

    @model_validator(mode="after")
    def _ends_by_midnight(self) -> BusyInterval:
        if self.start_hour + self.duration > 24:
            raise ValueError("duration: must end by midnight (start_hour + duration <= 24)")
        return self


class PlanRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    course_id: uuid.UUID
    exam_date: CalendarDate
    tz: TimeZone = "UTC"
    daily_minutes: Annotated[StrictInt, Field(ge=30, le=960, multiple_of=30)] = (
        DEFAULT_DAILY_MINUTES
    )
    day_start_hour: StartHour = 8.0
    day_end_hour: EndHour = 22.0
    busy: Annotated[list[BusyInterval], Field(max_length=MAX_BUSY_INTERVALS)] = []


class RangeQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    first: CalendarDate | None = Field(default=None, alias="from")
    last: CalendarDate | None = Field(default=None, alias="to")
    # The caller's time zone: "today" and "this week" are theirs, not UTC's.
    tz: TimeZone = "UTC"


class CalendarQuery(RangeQuery):
    pass


def _range(query: RangeQuery, today: date) -> tuple[date, date]:
    """``from``..``to``; with neither, the caller's week (Monday to Sunday) around today."""
    if query.first is None and query.last is None:
        monday = today - timedelta(days=today.weekday())
        return monday, monday + timedelta(days=6)
    first = query.first or today
    last = query.last or first + timedelta(days=DEFAULT_RANGE_DAYS - 1)
    if last < first:
        raise ValidationFailed({"to": "must not be before from"})
    if (last - first).days >= MAX_RANGE_DAYS:
        raise ValidationFailed({"to": f"the range may span at most {MAX_RANGE_DAYS} days"})
    return first, last


@router.get("/", query=RangeQuery, response=TaskList)
def list_tasks(call: Call) -> flask.Response:
    """Tasks dated ``from``..``to``; with neither, the caller's week (Monday to Sunday)."""
    query = call.query(RangeQuery)
    first, last = _range(query, clock.now().astimezone(ZoneInfo(query.tz)).date())
    with transaction(call.settings) as session:
        user = call.user(session)
        tasks = data.list_tasks(session, user_id=user.id, first=first, last=last)
    return json_response(TaskList.of({"tasks": tasks}))


@router.get("/calendar.ics", query=CalendarQuery, content_type="text/calendar")
def calendar_export(call: Call) -> flask.Response:
    """The same range as the listing, as an iCalendar file."""
    query = call.query(CalendarQuery)
    zone = ZoneInfo(query.tz)
    first, last = _range(query, clock.now().astimezone(zone).date())
    with transaction(call.settings) as session:
        user = call.user(session)
        tasks = data.tasks_between(session, user.id, first, last)
        body = data.calendar_ics(tasks, zone, clock.now())
    # Not JSON: the router's helpers would label it so; a plain Response carries the type.
    response = flask.Response(body, status=200, content_type="text/calendar; charset=utf-8")
    response.headers["Content-Disposition"] = 'attachment; filename="lectern-tasks.ics"'
    return response


def _reading_title(title: str, part: int, parts: int) -> str:
    suffix = f" (part {part} of {parts})" if parts > 1 else ""
    prefix = "Read: "
    return prefix + title[: TITLE_LENGTH - len(prefix) - len(suffix)].strip() + suffix


@router.post("/plan", body=PlanRequest, response=PlanMade, status=201, errors=(409,))
def plan_exam(call: Call) -> flask.Response:
    """A study plan for an exam: the course's unread files in free half hours before it.

    409 ``not_enough_time`` (with ``shortfall_minutes`` and ``earliest_exam_date``)
    when they cannot fit; nothing changes then. ``Location`` is the listing of
    the plan's days.
    """
    body = call.json(PlanRequest)
    now = clock.now()
    local = now.astimezone(ZoneInfo(body.tz))
    today = local.date()
    if body.exam_date <= today:
        raise ValidationFailed({"exam_date": f"must be after today ({today.isoformat()})"})
    horizon = today + timedelta(days=MAX_PLAN_DAYS)
    if body.exam_date > horizon:
        raise ValidationFailed({"exam_date": f"must be within {MAX_PLAN_DAYS} days"})
    if body.day_end_hour <= body.day_start_hour:
        raise ValidationFailed({"day_end_hour": "must be after day_start_hour"})
    # Now, rounded up to the next half hour: a slot under way is not free.
    seconds_today = local.hour * 3600 + local.minute * 60 + local.second + local.microsecond / 1e6
    first_slot = math.ceil(seconds_today / planner.SLOT_SECONDS)
    with transaction(call.settings) as session:
        user = call.user(session)
        # One plan at a time per user: two at once would each see the other's
        # slots free and overlap.
        session.execute(select(User.id).where(User.id == user.id).with_for_update(key_share=True))
        course = session.get(Course, body.course_id)
        if course is None:
            raise ValidationFailed({"course_id": "no such course"})
        replaced = data.remove_plan_ahead(
            session,
            user_id=user.id,
            course_id=course.id,
            today=today,
            now_hour=seconds_today / 3600,
        )
        files = data.reading_left(session, user_id=user.id, course_id=course.id)
        existing = data.tasks_between(session, user.id, today, horizon)
        occupied = data.taken_slots(
            [(task.date, task.start_hour, task.duration) for task in existing]
            + [(busy.date, busy.start_hour, busy.duration) for busy in body.busy]
        )
        calendar = planner.Calendar(
            today=today,
            first_slot=first_slot,
            exam_date=body.exam_date,
            daily_slots=body.daily_minutes // 30,
            window_start=int(body.day_start_hour * 2),
            window_end=int(body.day_end_hour * 2),
            occupied=occupied,
            used=data.study_slots(existing),
        )
        readings = [planner.Reading(index, file.seconds) for index, file in enumerate(files)]
        result = planner.make_plan(readings, calendar, horizon=horizon)
        if isinstance(result, planner.Shortfall):
            # Raising rolls the transaction back: the replaced tasks come back too.
            raise data.NotEnoughTime(result.slots * 30, result.earliest_exam_date)
        plan_id = uuid.uuid4()
        created = []
        for block in sorted(result.blocks, key=lambda block: (block.day, block.start_slot)):
            file = files[block.key] if isinstance(block.key, int) else None
            task = UserTask(
                user_id=user.id,
                title=(
                    _reading_title(file.title, block.part, block.parts)
                    if file
                    else ("Review: " + course.name)[:TITLE_LENGTH]
                ),
                date=block.day,
                start_hour=block.start_hour,
                duration=block.hours,
                priority="normal" if file else "high",
                file_id=file.file_id if file else None,
                plan_id=plan_id,
                course_id=course.id,
                created_at=now,
                updated_at=now,
            )
            session.add(task)
            created.append(task)
        session.flush()
        made = {"tasks": [data.task_to_json(task) for task in created], "replaced": replaced}
        days = [task.date for task in created] or [today]
        listing = f"/?from={min(days).isoformat()}&to={max(days).isoformat()}&tz={quote(body.tz)}"
        return json_response(PlanMade.of(made), 201, location=call.location(listing))


@router.post("/", body=NewTask, response=TaskWritten, status=201)
def create_task(call: Call) -> flask.Response:
    """A task of the caller's own; ``overlaps`` warns of others at the same time."""
    body = call.json(NewTask)
    _check_fits_the_day(body.start_hour, body.duration, "duration")
    with transaction(call.settings) as session:
        user = call.user(session)
        now = clock.now()
        task = UserTask(
            user_id=user.id,
            title=body.title,
            date=body.date,
            start_hour=body.start_hour,
            duration=body.duration,
            priority=body.priority,
            created_at=now,
            updated_at=now,
        )
        session.add(task)
        session.flush()
        written = {"task": data.task_to_json(task), "overlaps": data.overlapping(session, task)}
        location = call.location(f"/{task.id}")
        return json_response(TaskWritten.of(written), 201, location=location)


@router.get("/{task_id}", response=TaskOne)
def get_task(call: Call) -> flask.Response:
    """One of the caller's own tasks (another user's is 404)."""
    task_id = call.path_id("task_id")
    with transaction(call.settings) as session:
        task = data.get_task(session, user_id=call.user(session).id, task_id=task_id)
        if task is None:
            raise NotFound("no such task")
        return json_response(TaskOne.of({"task": data.task_to_json(task)}))


@router.patch("/{task_id}", body=TaskChanges, response=TaskWritten)
def update_task(call: Call) -> flask.Response:
    """Change any of the task's fields; ``overlaps`` as when it was made."""
    task_id = call.path_id("task_id")
    changes = call.json(TaskChanges).model_dump(exclude_unset=True)
    with transaction(call.settings) as session:
        task = data.get_task(session, user_id=call.user(session).id, task_id=task_id)
        if task is None:
            raise NotFound("no such task")
        _check_fits_the_day(
            changes.get("start_hour", task.start_hour),
            changes.get("duration", task.duration),
            "duration" if "duration" in changes else "start_hour",
        )
        for name, value in changes.items():
            setattr(task, name, value)
        task.updated_at = clock.now()
        session.flush()
        body = {"task": data.task_to_json(task), "overlaps": data.overlapping(session, task)}
        return json_response(TaskWritten.of(body))


@router.delete("/{task_id}", status=204)
def delete_task(call: Call) -> flask.Response:
    task_id = call.path_id("task_id")
    with transaction(call.settings) as session:
        task = data.get_task(session, user_id=call.user(session).id, task_id=task_id)
        if task is None:
            raise NotFound("no such task")
        session.delete(task)
    return no_content()


@functions_framework.http
def tasks(request: flask.Request) -> flask.Response:
    return router(request)

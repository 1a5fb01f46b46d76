"""tasks: the signed-in user's study plan, day by day."""

from __future__ import annotations

import re
from datetime import UTC, date, timedelta
from typing import Annotated, Any, Literal

import flask
import functions_framework
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StringConstraints,
    model_validator,
)

from shared import clock
from shared import tasks as data
from shared.config import Needs
from shared.db.engine import transaction
from shared.db.models import UserTask
from shared.errors import NotFound, ValidationFailed
from shared.fields import SingleLineText
from shared.http import Call, build_router, json_response, no_content

router = build_router(Needs.NONE)

MAX_RANGE_DAYS = 366
DEFAULT_RANGE_DAYS = 7


def _calendar_date(value: object) -> object:
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("must be a date written YYYY-MM-DD")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError("not a real calendar date") from None


CalendarDate = Annotated[date, BeforeValidator(_calendar_date)]
Title = Annotated[SingleLineText, StringConstraints(min_length=1, max_length=200)]
StartHour = Annotated[StrictFloat, Field(ge=0, le=23.5, multiple_of=0.5)]
Duration = Annotated[StrictFloat, Field(gt=0, le=24)]
Priority = Literal["normal", "high", "urgent"]


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


class RangeQuery(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    first: CalendarDate | None = Field(default=None, alias="from")
    last: CalendarDate | None = Field(default=None, alias="to")


@router.get("/")
def list_tasks(call: Call) -> flask.Response:
    query = call.query(RangeQuery)
    first = query.first or clock.now().astimezone(UTC).date()
    last = query.last or first + timedelta(days=DEFAULT_RANGE_DAYS - 1)
    if last < first:
        raise ValidationFailed({"to": "must not be before from"})
    if (last - first).days >= MAX_RANGE_DAYS:
        raise ValidationFailed({"to": f"the range may span at most {MAX_RANGE_DAYS} days"})
    with transaction(call.settings) as session:
        user = call.user(session)
        tasks = data.list_tasks(session, user_id=user.id, first=first, last=last)
    return json_response({"tasks": tasks})


@router.post("/")
def create_task(call: Call) -> flask.Response:
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
        return json_response({"task": data.task_to_json(task)}, 201)


@router.patch("/{task_id}")
def update_task(call: Call) -> flask.Response:
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
        return json_response({"task": data.task_to_json(task)})


@router.delete("/{task_id}")
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

"""Per-user rate limits: uploads per hour and searches per minute answer 429 past the limit."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from shared import clock
from tests.clocks import FakeClock
from tests.factories import make_course, make_lecturer, make_material_type
from tests.parallel import run_together
from tests.pdfs import make_pdf


@pytest.fixture(scope="module")
def function_env(function_env: dict[str, str]) -> dict[str, str]:
    return {
        **function_env,
        "RATE_LIMIT_UPLOADS_PER_HOUR": "2",
        "RATE_LIMIT_SEARCHES_PER_MINUTE": "3",
    }


@pytest.fixture
def fake_clock() -> Iterator[FakeClock]:
    fake = FakeClock()
    previous = clock.use(fake)
    yield fake
    clock.use(previous)


def test_searches_past_the_limit_are_429_until_the_window_ends(
    function_client: Callable[[str], Any],
    user_token: Callable[..., Any],
    fake_clock: FakeClock,
) -> None:
    search = function_client("search")
    _, headers = user_token()
    _, other = user_token()
    fake_clock.advance(10)  # 10 s into the minute
    statuses = [
        search.post("/", json={"query": "anything"}, headers=headers).status_code for _ in range(4)
    ]
    assert statuses == [200, 200, 200, 429]
    refused = search.post("/", json={"query": "anything"}, headers=headers)
    assert refused.json["error"]["code"] == "rate_limited"
    assert refused.headers["Retry-After"] == "50"
    # Limits are per user.
    assert search.post("/", json={"query": "anything"}, headers=other).status_code == 200
    fake_clock.advance(50)
    assert search.post("/", json={"query": "anything"}, headers=headers).status_code == 200


def test_parallel_uploads_cannot_slip_past_the_limit(
    function_client: Callable[[str], Any],
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    fake_clock: FakeClock,
) -> None:
    submit = function_client("submit")
    with sessions.begin() as session:
        course_id = make_course(session).id
        type_id = make_material_type(session).id
        lecturer_id = make_lecturer(session).id
    _, headers = user_token()

    def upload(client: Any) -> int:
        response = client.post(
            "/",
            data={
                "course_id": str(course_id),
                "type_id": str(type_id),
                "lecturer_id": str(lecturer_id),
                "title": "Notes",
                "academic_year": "1",
                "material_year": "2025",
                "file": (io.BytesIO(make_pdf(1)), "n.pdf", "application/pdf"),
            },
            headers=headers,
        )
        return int(response.status_code)

    clients = [submit.application.test_client() for _ in range(5)]
    statuses = run_together([partial(upload, client) for client in clients])
    assert sorted(statuses) == [201, 201, 429, 429, 429]

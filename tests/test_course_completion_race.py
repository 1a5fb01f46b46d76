"""Completing a course's last two files at the same moment still earns the bonus once,
even with file XP configured to 0 (so no ledger row serialises the two)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from shared import clock
from shared.db.models import PointsTransaction
from tests.clocks import FakeClock
from tests.factories import make_course, make_material
from tests.parallel import run_together


@pytest.fixture(scope="module")
def function_env(function_env: dict[str, str]) -> dict[str, str]:
    return {**function_env, "XP_FILE_COMPLETED": "0"}


@pytest.fixture
def fake_clock() -> Iterator[FakeClock]:
    fake = FakeClock()
    previous = clock.use(fake)
    yield fake
    clock.use(previous)


@pytest.mark.parametrize("attempt", range(5))
def test_parallel_last_completions_award_the_course_once(
    function_client: Callable[[str], Any],
    user_token: Callable[..., Any],
    sessions: sessionmaker[Session],
    fake_clock: FakeClock,
    attempt: int,
) -> None:
    client = function_client("heartbeat")
    user_id, headers = user_token()
    with sessions.begin() as session:
        course = make_course(session)
        files = [make_material(session, course=course, page_count=1).id for _ in range(2)]
    ids = [
        client.post("/sessions", json={"file_id": str(f)}, headers=headers).json["session"]["id"]
        for f in files
    ]
    fake_clock.advance(30)

    def beat(own: Any, session_id: str) -> dict[str, Any]:
        response = own.post(
            f"/sessions/{session_id}/beat", json={"active_seconds": 30}, headers=headers
        )
        return dict(response.json)

    bodies = run_together([partial(beat, client.application.test_client(), s) for s in ids])
    assert "completed" in {b["course"]["status"] for b in bodies}
    assert sum(b["celebration"] is not None for b in bodies) == 1
    with sessions.begin() as session:
        bonuses = session.scalar(
            select(func.count()).where(
                PointsTransaction.user_id == user_id,
                PointsTransaction.action == "course_complete",
            )
        )
    assert bonuses == 1

"""Database outages through the real functions: 503 with Retry-After, in bounded time.

DATABASE_URL points at a TCP proxy (``tests/tcp_faults.py``) in front of the
embedded server, so pg8000 meets a frozen server, reset and refused
connections, killed backends, lock waits and slow statements for real. The
timeouts are set short here; the elapsed-time bounds check that an outage is
answered, not how fast the code is.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pg8000.dbapi  # type: ignore[import-untyped]
import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from shared.config import Settings, load_settings
from shared.db.engine import build_engine, get_engine, within
from shared.db.models import User, UserTask
from shared.db.outage import is_unavailable, sqlstate
from tests.tcp_faults import PostgresProxy

SHORT = {
    "DB_CONNECT_TIMEOUT_S": "1",
    "DB_SOCKET_TIMEOUT_S": "1",
    "DB_POOL_TIMEOUT_S": "1",
    "DB_STATEMENT_TIMEOUT_MS": "500",
    "DB_LOCK_TIMEOUT_MS": "300",
    "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS": "2000",
}
# Worst case with SHORT: a BEGIN that times out (1 s; not retried), or a reconnect
# that times out (1 s); the rest is slack for a loaded 2-core machine.
BOUND_S = 5.0
TASK = {"title": "outage probe", "date": "2026-05-04", "start_hour": 9, "duration": 1}


@pytest.fixture(scope="module")
def pg_proxy(database_url: str) -> Iterator[PostgresProxy]:
    proxy = PostgresProxy(str(make_url(database_url).query["unix_sock"]))
    yield proxy
    proxy.close()


@pytest.fixture(scope="module")
def function_env(
    function_env: dict[str, str], pg_proxy: PostgresProxy, database_url: str
) -> dict[str, str]:
    return {**function_env, "DATABASE_URL": pg_proxy.url(database_url), **SHORT}


@pytest.fixture(autouse=True)
def _database_back(pg_proxy: PostgresProxy) -> Iterator[None]:
    pg_proxy.passing()
    yield
    pg_proxy.passing()


@pytest.fixture(scope="module")
def profile(function_client: Callable[[str], Any]) -> Any:
    return function_client("profile")


@pytest.fixture(scope="module")
def tasks(function_client: Callable[[str], Any]) -> Any:
    return function_client("tasks")


@pytest.fixture(scope="module")
def catalog(function_client: Callable[[str], Any]) -> Any:
    return function_client("catalog")


@pytest.fixture
def settings(function_client: Callable[[str], Any]) -> Settings:
    """The functions' settings (``function_client`` has put SHORT in the environment)."""
    return load_settings()


@pytest.fixture
def slow_task_inserts(engine: Engine) -> Iterator[None]:
    """Every INSERT into user_tasks sleeps 5 s on the server (this module's database only)."""
    with engine.begin() as connection:
        connection.execute(
            text(
                "CREATE FUNCTION outage_sleep() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN PERFORM pg_sleep(5); RETURN NEW; END $$"
            )
        )
        connection.execute(
            text(
                "CREATE TRIGGER outage_sleep BEFORE INSERT ON user_tasks"
                " FOR EACH ROW EXECUTE FUNCTION outage_sleep()"
            )
        )
    yield
    with engine.begin() as connection:
        connection.execute(text("DROP TRIGGER outage_sleep ON user_tasks"))
        connection.execute(text("DROP FUNCTION outage_sleep()"))


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def assert_unavailable(response: Any, *, leaks: tuple[str, ...] = ()) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.headers["Retry-After"] == "5"
    error = response.json["error"]
    assert error["code"] == "database_unavailable"
    assert error["request_id"] == response.headers["X-Request-Id"]
    body = response.get_data(as_text=True)
    for word in ("SELECT", "INSERT", "UPDATE", "pg8000", "users", "user_tasks", *leaks):
        assert word not in body


def count_tasks(sessions: sessionmaker[Session], user_id: uuid.UUID) -> int:
    with sessions() as session:
        return len(session.scalars(select(UserTask).where(UserTask.user_id == user_id)).all())


def test_every_connection_starts_with_the_server_timeouts(settings: Settings) -> None:
    for migrations, statement in ((False, "500ms"), (True, "0")):
        engine = build_engine(settings, migrations=migrations)
        try:
            with engine.connect() as connection:
                shown = connection.execute(
                    text(
                        "SELECT current_setting('statement_timeout'),"
                        " current_setting('lock_timeout'),"
                        " current_setting('idle_in_transaction_session_timeout')"
                    )
                ).one()
                socket_timeout = connection.connection.dbapi_connection._usock.gettimeout()  # type: ignore[union-attr]
        finally:
            engine.dispose()
        assert tuple(shown) == (statement, "300ms", "2s")
        # Migrations may wait on a long index build; requests may not.
        assert socket_timeout == (None if migrations else 1.0)


def test_sql_parameters_stay_out_of_exception_text(settings: Settings) -> None:
    engine = build_engine(settings)
    secret = "secret-user-text-4711"
    try:
        with pytest.raises(DBAPIError) as raised, engine.connect() as connection:
            connection.execute(text("SELECT :value, 1 / 0"), {"value": secret})
    finally:
        engine.dispose()
    # (The server's own message may still quote a value, e.g. a failed cast:
    # shared.http logs only the error's type.)
    assert "parameters hidden" in str(raised.value)
    assert secret not in str(raised.value)
    assert not is_unavailable(raised.value)  # a bug, not an outage


def test_frozen_database_is_503_in_bounded_time_and_recovers(
    pg_proxy: PostgresProxy, profile: Any, catalog: Any, user_token: Callable[..., Any]
) -> None:
    _, headers = user_token()
    assert profile.get("/me", headers=headers).status_code == 200

    pg_proxy.freeze()
    # A pooled connection that no longer answers, then new ones that are never answered.
    for client, path in ((profile, "/me"), (profile, "/me"), (catalog, "/majors")):
        response, elapsed = timed(lambda: client.get(path, headers=headers))  # noqa: B023
        assert_unavailable(response)
        assert elapsed < BOUND_S

    pg_proxy.passing()
    # Same process, same engine: invalidated connections are replaced.
    assert profile.get("/me", headers=headers).status_code == 200
    assert catalog.get("/majors", headers=headers).status_code == 200


def test_dropped_database_is_503_at_once_and_recovers(
    pg_proxy: PostgresProxy, profile: Any, user_token: Callable[..., Any]
) -> None:
    _, headers = user_token()
    assert profile.get("/me", headers=headers).status_code == 200

    pg_proxy.drop()  # existing connections reset, new ones refused
    for _ in range(2):
        response, elapsed = timed(lambda: profile.get("/me", headers=headers))
        assert_unavailable(response)
        assert elapsed < 1.0  # nothing to wait for: the answer is a reset or a refusal

    pg_proxy.passing()
    assert profile.get("/me", headers=headers).status_code == 200


def test_writes_during_an_outage_change_nothing(
    pg_proxy: PostgresProxy,
    profile: Any,
    tasks: Any,
    sessions: sessionmaker[Session],
    user_token: Callable[..., Any],
) -> None:
    user_id, headers = user_token(name="Before Outage")
    assert tasks.get("/", headers=headers).status_code == 200

    for outage in (pg_proxy.freeze, pg_proxy.drop):
        outage()
        assert_unavailable(tasks.post("/", json=TASK, headers=headers), leaks=(TASK["title"],))
        assert_unavailable(profile.patch("/me", json={"name": "During Outage"}, headers=headers))
        pg_proxy.passing()

    assert count_tasks(sessions, user_id) == 0
    with sessions() as session:
        assert session.get(User, user_id).name == "Before Outage"  # type: ignore[union-attr]
    assert tasks.post("/", json=TASK, headers=headers).status_code == 201
    assert count_tasks(sessions, user_id) == 1


def test_a_lock_held_past_lock_timeout_is_503_not_a_hang(
    profile: Any, engine: Engine, sessions: sessionmaker[Session], user_token: Callable[..., Any]
) -> None:
    user_id, headers = user_token(name="Locked")
    assert profile.get("/me", headers=headers).status_code == 200

    with engine.connect() as blocker:
        blocker.execute(
            text("SELECT 1 FROM users WHERE id = :id FOR UPDATE"), {"id": user_id}
        )  # held until the block ends
        response, elapsed = timed(
            lambda: profile.patch("/me", json={"name": "Changed"}, headers=headers)
        )
        assert_unavailable(response)
        assert elapsed < BOUND_S
        blocker.rollback()

    with sessions() as session:
        assert session.get(User, user_id).name == "Locked"  # type: ignore[union-attr]
    assert profile.patch("/me", json={"name": "Changed"}, headers=headers).status_code == 200


@pytest.mark.usefixtures("slow_task_inserts")
def test_a_statement_past_statement_timeout_is_503(
    tasks: Any, sessions: sessionmaker[Session], user_token: Callable[..., Any]
) -> None:
    user_id, headers = user_token()
    response, elapsed = timed(lambda: tasks.post("/", json=TASK, headers=headers))
    assert_unavailable(response, leaks=(TASK["title"],))
    assert 0.4 < elapsed < BOUND_S  # cut at 500 ms by the server, not by the 5 s sleep
    assert count_tasks(sessions, user_id) == 0


@pytest.mark.usefixtures("slow_task_inserts")
def test_a_backend_killed_mid_transaction_is_503_and_writes_nothing(
    tasks: Any, engine: Engine, sessions: sessionmaker[Session], user_token: Callable[..., Any]
) -> None:
    user_id, headers = user_token()
    answer: list[Any] = []
    request = threading.Thread(
        target=lambda: answer.append(tasks.post("/", json=TASK, headers=headers))
    )
    request.start()
    killed = False
    deadline = time.monotonic() + 3
    with engine.connect() as admin:
        while not killed and time.monotonic() < deadline:
            # The request's INSERT, asleep in the trigger (statement_timeout ends it at 500 ms).
            killed = bool(
                admin.scalar(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE wait_event = 'PgSleep' AND query LIKE 'INSERT INTO user_tasks%'"
                    )
                )
            )
            admin.rollback()
            time.sleep(0.01)
    request.join(timeout=10)
    assert killed
    assert_unavailable(answer[0], leaks=(TASK["title"],))
    assert count_tasks(sessions, user_id) == 0


def test_an_empty_pool_is_503_after_pool_timeout(
    profile: Any, settings: Settings, user_token: Callable[..., Any]
) -> None:
    _, headers = user_token()
    assert profile.get("/me", headers=headers).status_code == 200
    engine = get_engine(settings)  # the function's own engine (one per process)
    held = [engine.connect() for _ in range(settings.DB_POOL_SIZE + settings.DB_MAX_OVERFLOW)]
    try:
        response, elapsed = timed(lambda: profile.get("/me", headers=headers))
        assert_unavailable(response)
        assert 0.9 < elapsed < BOUND_S
    finally:
        for connection in held:
            connection.close()
    assert profile.get("/me", headers=headers).status_code == 200


def test_connect_bound_used_for_cloud_sql_gives_up_and_closes_the_late_connection(
    pg_proxy: PostgresProxy, database_url: str
) -> None:
    """``within`` bounds the Cloud SQL connector, which applies no timeout of its own."""
    made: list[Any] = []

    def connect() -> Any:
        connection = pg8000.dbapi.connect(
            user="postgres",
            host="127.0.0.1",
            port=pg_proxy.port,
            database=make_url(database_url).database,
        )
        made.append(connection)
        return connection

    pg_proxy.freeze()
    started = time.monotonic()
    with pytest.raises(pg8000.dbapi.InterfaceError) as raised:
        within(0.5, connect)
    assert time.monotonic() - started < 1.5
    assert is_unavailable(raised.value)
    pg_proxy.passing()
    deadline = time.monotonic() + 5
    while not made and time.monotonic() < deadline:
        time.sleep(0.02)
    assert made, "the late connection was never made"
    time.sleep(0.05)  # the done-callback runs right after the result is set
    assert made[0]._sock is None  # closed by within(), not leaked


def test_mistakes_are_not_outages(database_url: str, engine: Engine) -> None:
    with pytest.raises(DBAPIError) as syntax, engine.connect() as connection:
        connection.execute(text("SELEC 1"))
    with pytest.raises(DBAPIError) as constraint, engine.connect() as connection:
        connection.execute(text("INSERT INTO users (id) VALUES (NULL)"))
    for error in (syntax.value, constraint.value):
        assert not is_unavailable(error)
    assert [sqlstate(syntax.value), sqlstate(constraint.value)] == ["42601", "23502"]

    # pg8000 sometimes reports this as "network error" (its cleanup meets the
    # socket the server closed), with the server's 3D000 as context: many tries.
    missing = create_engine(make_url(database_url).set(database="no_such_database"))
    try:
        for _ in range(20):
            with pytest.raises(DBAPIError) as no_database:
                missing.connect()
            assert sqlstate(no_database.value) == "3D000", no_database.value
            assert not is_unavailable(no_database.value)
    finally:
        missing.dispose()

"""The engine's wire behaviour: no pre-ping, dead pooled connections replaced
before the transaction runs anything, statements prepared once per connection.

Through a TCP proxy (``tests/tcp_faults.py``) in front of the embedded server,
so a pooled connection dies for real.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError

from shared.config import Settings
from shared.db.engine import PREPARED, build_engine
from shared.db.outage import is_unavailable
from tests.tcp_faults import PostgresProxy

PID = text("SELECT pg_backend_pid()")
PREPARED_COUNT = text("SELECT count(*) FROM pg_prepared_statements")
ADD = text("SELECT CAST(:a AS int) + CAST(:b AS int) AS total, CAST(:label AS text) AS label")


@pytest.fixture(scope="module")
def pg_proxy(database_url: str) -> Iterator[PostgresProxy]:
    proxy = PostgresProxy(str(make_url(database_url).query["unix_sock"]))
    yield proxy
    proxy.close()


@pytest.fixture
def lectern_engine(database_url: str, pg_proxy: PostgresProxy) -> Iterator[Engine]:
    pg_proxy.passing()
    settings = Settings(
        DATABASE_URL=pg_proxy.url(database_url), DB_POOL_SIZE=1, DB_SOCKET_TIMEOUT_S=2
    )
    engine = build_engine(settings)
    yield engine
    engine.dispose()
    _bounce(pg_proxy)


def _bounce(proxy: PostgresProxy) -> None:
    """Reset every connection through the proxy, then forward new ones again."""
    proxy.drop()
    # The closed listener's accept() holds the port until a connection wakes it.
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", proxy.port), timeout=1).close()
        except ConnectionRefusedError:
            break
        except OSError:
            pass
        time.sleep(0.005)
    proxy.passing()


def _statements(engine: Engine) -> list[str]:
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _record(*args: Any) -> None:
        seen.append(args[2])

    return seen


def test_the_pool_is_its_size_without_overflow_or_pre_ping() -> None:
    engine = build_engine(Settings(DATABASE_URL="postgresql+pg8000://u@/db?unix_sock=/none"))
    assert engine.pool.size() == 4  # type: ignore[attr-defined]
    assert engine.pool._max_overflow == 0  # type: ignore[attr-defined]
    assert engine.pool._pre_ping is False
    engine.dispose()


def test_a_transaction_sends_no_ping(lectern_engine: Engine) -> None:
    with lectern_engine.begin() as connection:
        connection.execute(PID)
    seen = _statements(lectern_engine)
    with lectern_engine.begin() as connection:
        connection.execute(PID)
    assert seen == ["SELECT pg_backend_pid()"]


def test_a_connection_the_server_closed_is_replaced_on_checkout(
    lectern_engine: Engine, pg_proxy: PostgresProxy
) -> None:
    with lectern_engine.begin() as connection:
        first = connection.scalar(PID)
    _bounce(pg_proxy)
    with lectern_engine.begin() as connection:
        assert connection.scalar(PID) != first


def test_a_connection_that_dies_after_checkout_is_replaced_at_begin(
    lectern_engine: Engine, pg_proxy: PostgresProxy
) -> None:
    with lectern_engine.begin() as connection:
        first = connection.scalar(PID)

    # After the checkout's socket check: the connection dies between checkout and BEGIN.
    @event.listens_for(lectern_engine, "checkout")
    def _die(*_args: Any) -> None:
        _bounce(pg_proxy)

    with lectern_engine.begin() as connection:
        second = connection.scalar(PID)
        connection.execute(text("CREATE TEMP TABLE probe (n int)"))
    event.remove(lectern_engine, "checkout", _die)
    assert second != first
    # The replacement connection is in a real transaction: what it did is one unit.
    with lectern_engine.begin() as connection:
        assert connection.scalar(text("SELECT to_regclass('pg_temp.probe') IS NOT NULL"))


def test_a_failure_after_begin_is_not_retried(
    lectern_engine: Engine, pg_proxy: PostgresProxy
) -> None:
    with lectern_engine.begin() as connection:
        first = connection.scalar(PID)
    seen = _statements(lectern_engine)
    with lectern_engine.connect() as connection:
        connection.execute(text("SELECT 1"))
        pg_proxy.drop()
        # A reset, or an end of stream when the proxy's pump closes first: gone either way.
        with pytest.raises((OSError, DBAPIError)) as raised:
            connection.execute(text("SELECT 2"))
        connection.rollback()
    assert is_unavailable(raised.value)  # a 503, not a silent second run
    assert seen == ["SELECT 1", "SELECT 2"]
    _bounce(pg_proxy)
    with lectern_engine.begin() as connection:  # the dead connection left the pool
        assert connection.scalar(PID) != first


def test_a_prepared_statement_is_parsed_once_per_connection(lectern_engine: Engine) -> None:
    statement = ADD.execution_options(**PREPARED)
    results = []
    for n in range(5):
        with lectern_engine.begin() as connection:
            row = connection.execute(statement, {"a": n, "b": 10, "label": f"n{n}"}).one()
            results.append((row.total, row.label))
            prepared = connection.scalar(PREPARED_COUNT)
    assert results == [(10 + n, f"n{n}") for n in range(5)]
    assert prepared == 1
    # A statement without the option is not prepared.
    with lectern_engine.begin() as connection:
        connection.execute(ADD, {"a": 1, "b": 2, "label": "x"})
        assert connection.scalar(PREPARED_COUNT) == 1


def test_a_prepared_statement_runs_inside_the_transaction(lectern_engine: Engine) -> None:
    insert = text("INSERT INTO probe_rows (n) VALUES (:n) RETURNING n").execution_options(
        **PREPARED
    )
    with lectern_engine.begin() as connection:
        connection.execute(text("CREATE TABLE IF NOT EXISTS probe_rows (n int)"))
    connection = lectern_engine.connect()
    with connection.begin():
        assert connection.scalar(insert, {"n": 1}) == 1
        connection.rollback()
    connection.close()
    with lectern_engine.begin() as connection:
        assert connection.scalar(text("SELECT count(*) FROM probe_rows")) == 0
        assert connection.scalar(insert, {"n": 2}) == 2
    with lectern_engine.begin() as connection:
        assert connection.scalar(text("SELECT count(*) FROM probe_rows")) == 1


def test_a_prepared_statement_survives_a_replaced_connection(
    lectern_engine: Engine, pg_proxy: PostgresProxy
) -> None:
    statement = ADD.execution_options(**PREPARED)
    with lectern_engine.begin() as connection:
        assert connection.execute(statement, {"a": 1, "b": 1, "label": "a"}).one().total == 2
    _bounce(pg_proxy)
    with lectern_engine.begin() as connection:
        assert connection.execute(statement, {"a": 2, "b": 2, "label": "b"}).one().total == 4
        assert connection.scalar(PREPARED_COUNT) == 1


def test_a_prepared_statement_whose_result_type_changed_is_prepared_again(
    lectern_engine: Engine, database_url: str
) -> None:
    with lectern_engine.begin() as connection:
        connection.execute(text("CREATE TABLE probe_types (id int PRIMARY KEY, n int)"))
        connection.execute(text("INSERT INTO probe_types VALUES (1, 5)"))
    statement = text("SELECT n FROM probe_types WHERE id = :id").execution_options(**PREPARED)
    with lectern_engine.begin() as connection:
        backend = connection.scalar(text("SELECT pg_backend_pid()"))
        assert connection.scalar(statement, {"id": 1}) == 5
    # A migration, from elsewhere, widens the column the statement returns.
    other = build_engine(Settings(DATABASE_URL=database_url))
    with other.begin() as connection:
        connection.execute(text("ALTER TABLE probe_types ALTER COLUMN n TYPE bigint"))
    other.dispose()
    outcomes = []
    for _ in range(3):
        try:
            with lectern_engine.begin() as connection:
                assert connection.scalar(text("SELECT pg_backend_pid()")) == backend
                outcomes.append(connection.scalar(statement, {"id": 1}))
        except DBAPIError as error:
            outcomes.append(type(error.orig).__name__)
    # The first call meets the stale plan; the same connection then recovers.
    assert outcomes == ["DatabaseError", 5, 5]


def _round_trips(connection: Any) -> list[int]:
    """Counts the driver's waits for the server (one per round trip) from now on."""
    raw = connection.connection.dbapi_connection
    waits = [0]
    original = raw.handle_messages

    def counted(context: Any) -> Any:
        waits[0] += 1
        return original(context)

    raw.handle_messages = counted
    return waits


def test_a_statement_with_parameters_is_one_round_trip(lectern_engine: Engine) -> None:
    with lectern_engine.connect() as connection:
        connection.execute(PID)  # BEGIN has been sent
        waits = _round_trips(connection)
        row = connection.execute(ADD, {"a": 2, "b": 3, "label": "five"}).one()
        assert (row.total, row.label) == (5, "five")
        assert waits == [1]  # pg8000 alone waits three times: parse, describe, execute
        connection.commit()
        assert waits == [2]  # COMMIT: one more


def test_errors_of_a_pipelined_statement_are_the_servers(lectern_engine: Engine) -> None:
    from sqlalchemy.exc import DatabaseError

    from shared.db.outage import is_unavailable, sqlstate

    with lectern_engine.connect() as connection:
        # The same class pg8000's own path raises: a server error is its DatabaseError.
        with pytest.raises(DatabaseError) as syntax:
            connection.execute(text("SELEC :a"), {"a": 1})
        assert sqlstate(syntax.value) == "42601"
        assert not is_unavailable(syntax.value)
        connection.rollback()
        with pytest.raises(DatabaseError) as conversion:
            connection.execute(text("SELECT CAST(:a AS int)"), {"a": "not a number"})
        assert sqlstate(conversion.value) == "22P02"
        connection.rollback()
        # The connection is in step with the server afterwards.
        assert connection.execute(ADD, {"a": 1, "b": 1, "label": "ok"}).one().total == 2

"""The engine factory shared by every function, the CLI and Alembic.

``DATABASE_URL`` connects with pg8000 directly (local stack, tests). Without
it, ``CLOUD_SQL_INSTANCE`` connects through cloud-sql-python-connector, which
is imported only on that path because it costs ~660 ms at cold start.

One engine per process, created on first use and reused by every request.

Every connection is bounded so that a frozen or vanished database costs a
request seconds, never the function's whole timeout (docs/operators.md,
"Database timeouts"):

- ``DB_CONNECT_TIMEOUT_S`` bounds opening a connection, TCP and the startup
  handshake included (pg8000's ``timeout`` while connecting; on the connector
  path a wait on the connector, which applies no limit of its own there).
- ``DB_SOCKET_TIMEOUT_S`` then bounds every read and write on the socket, so
  a server that stops answering mid-statement fails the request.
- ``statement_timeout``, ``lock_timeout`` and
  ``idle_in_transaction_session_timeout`` are sent as startup parameters, so
  the server ends long statements, lock waits and abandoned transactions.
- ``pool_timeout`` bounds the wait for a pooled connection.

The pool holds ``DB_POOL_SIZE`` connections and no overflow by default: one
per request the instance serves at once (infra/ sets it to the function's
concurrency), so the connection budget is ``max_instances x concurrency``.

There is no pre-ping round trip: a pooled connection the server closed is
found on checkout by looking at its socket (readable means the server sent
its goodbye, or EOF), and one that dies without a word is replaced when the
transaction's ``BEGIN`` fails (``shared.db.dialect``).
"""

from __future__ import annotations

import contextlib
import math
import select
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event, exc
from sqlalchemy.dialects import registry
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine, ExceptionContext

    from shared.config import Settings

__all__ = [
    "PREPARED",
    "build_engine",
    "dispose_engine",
    "get_engine",
    "server_settings",
    "transaction",
]

_lock = threading.Lock()
_engine: Engine | None = None
_session_factory: sessionmaker[Session] | None = None
_connector: Any = None

# pg8000 with fewer round trips per transaction (shared/db/dialect.py),
# imported when the first engine is built.
DRIVER = "postgresql+lectern_pg8000"
# Execution options that prepare a statement once per connection
# (``text(...).execution_options(**PREPARED)``; shared/db/dialect.py says when).
PREPARED = {"prepared": True}


def server_settings(settings: Settings, *, migrations: bool = False) -> dict[str, str]:
    """The session settings every connection starts with (milliseconds).

    Migrations run without a statement timeout (an index build may take
    minutes) but keep the lock timeout: a migration that cannot get its lock
    fails instead of queueing every request behind it.
    """
    return {
        "statement_timeout": "0" if migrations else str(settings.DB_STATEMENT_TIMEOUT_MS),
        "lock_timeout": str(settings.DB_LOCK_TIMEOUT_MS),
        "idle_in_transaction_session_timeout": str(settings.DB_IDLE_IN_TRANSACTION_TIMEOUT_MS),
    }


def build_engine(settings: Settings, *, migrations: bool = False) -> Engine:
    """A new engine for these settings; callers normally want ``get_engine``.

    ``migrations=True`` lifts the statement and socket timeouts for schema
    changes that run longer than any request.
    """
    # Imported here (not named only in the registry) so packaging sees it.
    from shared.db.dialect import LecternPg8000Dialect

    registry.register(
        "postgresql.lectern_pg8000", LecternPg8000Dialect.__module__, LecternPg8000Dialect.__name__
    )
    startup_params = server_settings(settings, migrations=migrations)
    socket_timeout = None if migrations else settings.DB_SOCKET_TIMEOUT_S
    options: dict[str, Any] = {
        "pool_size": settings.DB_POOL_SIZE,
        "max_overflow": settings.DB_MAX_OVERFLOW,
        "pool_timeout": settings.DB_POOL_TIMEOUT_S,
        "pool_recycle": 1800,
        # SQL parameters are user data: keep them out of logs and exception text.
        "hide_parameters": True,
    }
    if settings.DATABASE_URL:
        engine = create_engine(
            make_url(settings.DATABASE_URL).set(drivername=DRIVER),
            connect_args={
                "timeout": settings.DB_CONNECT_TIMEOUT_S,
                "startup_params": startup_params,
            },
            **options,
        )
        _own_tcp_sockets(engine)
    else:
        creator = _cloud_sql_creator(settings, startup_params)
        engine = create_engine(f"{DRIVER}://", creator=creator, **options)
    _bound_sockets(engine, socket_timeout)
    _discard_closed_on_checkout(engine)
    return engine


def _discard_closed_on_checkout(engine: Engine) -> None:
    @event.listens_for(engine, "checkout")
    def _check(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        # An idle connection has nothing to read; a readable one was closed by
        # the server (idle timeout, restart, failover). No round trip: a poll.
        sock = dbapi_connection._usock
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            raise exc.DisconnectionError("the server closed this pooled connection")


def _bound_sockets(engine: Engine, socket_timeout: float | None) -> None:
    @event.listens_for(engine, "connect")
    def _set_socket_timeout(dbapi_connection: Any, _record: Any) -> None:
        # pg8000 keeps its connect timeout on the socket and has no setting
        # for afterwards; with the connector it applies none at all.
        dbapi_connection._usock.settimeout(socket_timeout)

    @event.listens_for(engine, "handle_error")
    def _socket_failures_disconnect(context: ExceptionContext) -> None:
        # pg8000 lets a socket timeout on the first read of a reply escape
        # unwrapped; the connection is as broken as after a "network error".
        # Any other non-driver error (a parameter pg8000 fails to convert
        # half-way through sending) may also leave the wire out of step with
        # the server: never hand such a connection to the next request.
        import pg8000.dbapi  # type: ignore[import-untyped]

        if not isinstance(context.original_exception, pg8000.dbapi.Error):
            context.is_disconnect = True


def _own_tcp_sockets(engine: Engine) -> None:
    @event.listens_for(engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        """Open the TCP socket here, so a handshake that fails closes it.

        pg8000 leaves its own socket to the garbage collector when the
        handshake times out (a frozen server), one per attempt.
        """
        if "unix_sock" in cparams or "sock" in cparams:
            return None  # pg8000 connects as usual
        import pg8000.dbapi

        address = (cparams.pop("host", "localhost"), cparams.pop("port", 5432))
        timeout = cparams.get("timeout")
        try:
            sock = socket.create_connection(address, timeout)
        except OSError as error:
            raise pg8000.dbapi.InterfaceError(f"Can't create a connection to {address}") from error
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            return pg8000.dbapi.connect(*cargs, sock=sock, **cparams)
        except BaseException:
            sock.close()
            raise


def _cloud_sql_creator(settings: Settings, startup_params: dict[str, str]) -> Any:
    global _connector
    from google.cloud.sql.connector import Connector

    if _connector is None:
        # Lazy refresh: Cloud Functions throttle CPU between requests, which
        # starves the connector's background refresh of certificates.
        _connector = Connector(refresh_strategy="lazy")
    connector = _connector

    def connect() -> Any:
        return connector.connect(
            settings.CLOUD_SQL_INSTANCE,
            "pg8000",
            user=settings.DB_USER,
            password=None if settings.DB_IAM_AUTH else settings.DB_PASSWORD,
            db=settings.DB_NAME,
            enable_iam_auth=settings.DB_IAM_AUTH,
            startup_params=startup_params,
            # Honoured by the connector only on its SQL Data Service path; the
            # usual path opens the socket and runs the handshake with no limit.
            timeout=math.ceil(settings.DB_CONNECT_TIMEOUT_S),
        )

    return lambda: within(settings.DB_CONNECT_TIMEOUT_S, connect)


def within(seconds: float, connect: Callable[[], Any]) -> Any:
    """``connect()`` on its own thread, given up after ``seconds``.

    The thread cannot be interrupted; if it connects after all, that late
    connection is closed rather than leaked.
    """
    import pg8000.dbapi

    future: Future[Any] = Future()

    def run() -> None:
        try:
            future.set_result(connect())
        except BaseException as error:
            future.set_exception(error)

    threading.Thread(target=run, name="db-connect", daemon=True).start()
    try:
        return future.result(timeout=seconds)
    except TimeoutError:
        if future.done():
            raise  # the connect attempt itself timed out
        future.add_done_callback(_close_late_connection)
        raise pg8000.dbapi.InterfaceError(
            f"network error: no connection within {seconds:g} s"
        ) from None


def _close_late_connection(future: Future[Any]) -> None:
    if future.exception() is None:
        with contextlib.suppress(Exception):
            future.result().close()


def get_engine(settings: Settings) -> Engine:
    """The process-wide engine, created on first use."""
    global _engine, _session_factory
    if _engine is None:
        with _lock:
            if _engine is None:
                _engine = build_engine(settings)
                _session_factory = sessionmaker(_engine, expire_on_commit=False)
    return _engine


def dispose_engine() -> None:
    """Forget the process-wide engine (tests and the CLI switch databases)."""
    global _engine, _session_factory
    with _lock:
        if _engine is not None:
            _engine.dispose()
        _engine = None
        _session_factory = None


@contextmanager
def transaction(settings: Settings) -> Iterator[Session]:
    """One unit of work: commits on success, rolls back on any exception.

    Handlers own their transaction through this; data functions only use the
    session they are given and never commit.
    """
    get_engine(settings)
    assert _session_factory is not None
    with _session_factory.begin() as session:
        yield session

"""Which database errors mean "the database is unavailable, retry later".

A request that meets one of these is answered ``503`` with ``Retry-After``
(``shared.http``), not ``500``: nothing was changed (the transaction rolled
back) and the same request will work once the database is back.

What pg8000 1.31 and SQLAlchemy 2 actually raise (``tests/test_db_outage.py``
provokes each through a TCP proxy in front of a real server):

- A server error is pg8000's ``ProgrammingError`` (wrapped by SQLAlchemy as
  ``sqlalchemy.exc.ProgrammingError``) carrying the server's fields; ``C`` is
  the SQLSTATE. ``statement_timeout`` is 57014, ``lock_timeout`` 55P03.
  Timeouts and transient server states are told apart from bugs (42601
  syntax, 23505 unique violation, 3D000 missing database, 28P01 bad password)
  by SQLSTATE alone, also when pg8000 hides a fatal server error behind a
  "network error" from its cleanup (a connect to a missing database does this
  in a quarter to two thirds of tries against PostgreSQL 18).
- A broken, reset or refused connection, and a server killed under a
  connection, is an ``InterfaceError`` ("network error", "connection is
  closed", "communication error" or "Can't create a connection ..." caused by
  an ``OSError``), wrapped by SQLAlchemy with ``connection_invalidated``.
- A socket timeout or reset on the *first* read of a reply escapes pg8000
  unwrapped: a bare ``TimeoutError`` / ``ConnectionResetError`` (an
  ``OSError``), also from a transaction's BEGIN and from a connect handshake.
  Such an ``OSError`` counts only if it came out of the driver or the Cloud
  SQL connector, so a network error elsewhere is not called a database outage.
- A pool that stayed empty for ``DB_POOL_TIMEOUT_S`` is SQLAlchemy's
  ``TimeoutError`` (not the builtin one).

Other ``InterfaceError`` messages are mistakes in code or configuration ("Only
%s and %% are supported", an unsupported authentication method, a missing
password) and stay ``500``.
"""

from __future__ import annotations

from types import TracebackType

from sqlalchemy import exc

__all__ = ["FOREIGN_KEY_VIOLATION", "UNAVAILABLE_SQLSTATES", "is_unavailable", "sqlstate"]

# Not an outage: a referenced row was deleted by a concurrent transaction.
FOREIGN_KEY_VIOLATION = "23503"

UNAVAILABLE_SQLSTATES = {
    "57014": "a statement ran past statement_timeout",
    "55P03": "a lock was not granted within lock_timeout",
    "25P03": "a transaction sat idle past idle_in_transaction_session_timeout",
    "40001": "a serialization failure",
    "40P01": "a deadlock",
    "53300": "too many connections",
    "57P01": "the server is shutting down",
    "57P02": "the server crashed",
    "57P03": "the server is starting up",
}
# Class 08: connection exceptions.
_CONNECTION_CLASS = "08"
# pg8000's InterfaceError messages for a connection that failed or is gone.
_NETWORK_MESSAGES = ("network error", "connection is closed", "communication error")
# Where a bare OSError must come from to be a database outage.
_DRIVER_MODULES = ("pg8000.", "google.cloud.sql.connector.")


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE a pg8000 server error carries, if any.

    When the server ends a connection with an error (a missing database, a
    shutdown), pg8000 may meet the closed socket while cleaning up and raise
    "network error" instead, with the server's error as its context: the
    server's SQLSTATE is the truth then.
    """
    import pg8000.dbapi  # type: ignore[import-untyped]

    original = getattr(error, "orig", error)
    if isinstance(original, pg8000.dbapi.InterfaceError):
        # network error <- BrokenPipeError <- the server's DatabaseError
        link = original.__context__
        for _ in range(3):
            if link is None or isinstance(link, pg8000.dbapi.DatabaseError):
                break
            link = link.__context__
        original = link if isinstance(link, pg8000.dbapi.DatabaseError) else original
    for arg in getattr(original, "args", ()):
        if isinstance(arg, dict) and isinstance(arg.get("C"), str):
            return str(arg["C"])
    return None


def is_unavailable(error: BaseException) -> bool:
    """True for an outage, a timeout or a transient server state; False for a bug."""
    import pg8000.dbapi

    if isinstance(error, exc.TimeoutError):
        return True
    code = sqlstate(error)
    if code is not None:
        return code in UNAVAILABLE_SQLSTATES or code[:2] == _CONNECTION_CLASS
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated:
            return True
        if error.orig is None:
            return False
        error = error.orig
    if isinstance(error, pg8000.dbapi.InterfaceError):
        return _is_network_failure(error)
    if isinstance(error, OSError):
        return _raised_by_driver(error.__traceback__)
    return False


def _is_network_failure(error: BaseException) -> bool:
    message = str(error.args[0]) if error.args else ""
    return message.startswith(_NETWORK_MESSAGES) or isinstance(error.__cause__, OSError)


def _raised_by_driver(traceback: TracebackType | None) -> bool:
    while traceback is not None:
        module = str(traceback.tb_frame.f_globals.get("__name__", ""))
        if module.startswith(_DRIVER_MODULES):
            return True
        traceback = traceback.tb_next
    return False

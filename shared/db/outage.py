"""Which database errors mean "the database is unavailable, retry later".

A request that meets one of these is answered ``503`` with ``Retry-After``
(``shared.http``), not ``500``: nothing was changed (the transaction rolled
back) and the same request will work once the database is back.

pg8000 reports every server error as ``DatabaseError`` carrying the server's
fields (``C`` is the SQLSTATE), so timeouts and shutdowns are told apart from
bugs by their SQLSTATE; a broken socket or a refused connection is an
``InterfaceError``; a pool that stayed empty for ``DB_POOL_TIMEOUT_S`` is
SQLAlchemy's ``TimeoutError``.
"""

from __future__ import annotations

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


def sqlstate(error: BaseException) -> str | None:
    """The SQLSTATE a pg8000 server error carries, if any."""
    original = getattr(error, "orig", error)
    for arg in getattr(original, "args", ()):
        if isinstance(arg, dict) and isinstance(arg.get("C"), str):
            return str(arg["C"])
    return None


def is_unavailable(error: BaseException) -> bool:
    """True for an outage, a timeout or a transient server state; False for a bug."""
    if isinstance(error, exc.TimeoutError):
        return True
    if isinstance(error, exc.DBAPIError):
        if error.connection_invalidated:
            return True
        if isinstance(error, exc.InterfaceError | exc.OperationalError):
            return True
        code = sqlstate(error)
        return code is not None and (code in UNAVAILABLE_SQLSTATES or code[:2] == _CONNECTION_CLASS)
    # The driver's own errors when SQLAlchemy did not wrap them (connect time).
    import pg8000.dbapi  # type: ignore[import-untyped]

    if isinstance(error, pg8000.dbapi.InterfaceError | OSError | TimeoutError):
        return True
    if isinstance(error, pg8000.dbapi.DatabaseError):
        code = sqlstate(error)
        return code is not None and (code in UNAVAILABLE_SQLSTATES or code[:2] == _CONNECTION_CLASS)
    return False

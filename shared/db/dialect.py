"""pg8000 with fewer round trips: SQLAlchemy's pg8000 dialect, four methods changed.

``shared.db.engine`` registers this as ``postgresql+lectern_pg8000``; the
module is imported when the first engine is built, not at function import.

What a request's transaction costs on the wire, before and after:

- **No pre-ping.** ``pool_pre_ping`` spent two round trips (``begin`` and
  ``SELECT 1``) on every checkout. Instead ``do_begin`` sends the transaction's
  ``BEGIN`` itself (one round trip pg8000 would send before the first
  statement anyway) and, if that fails with a connection error, the pooled
  connection was dead: it is discarded and ``BEGIN`` is sent once more on a
  new one. Nothing of the transaction has run at that point, so the retry
  can never repeat work. A timeout is not retried (it already spent
  ``DB_SOCKET_TIMEOUT_S`` of the request's budget), nor is any error after
  ``BEGIN`` succeeded: that fails the request (503) and the connection is
  invalidated by the engine's ``handle_error``.
- **COMMIT and ROLLBACK in one round trip.** pg8000 sends them with the
  extended protocol in three (parse, describe, execute, each waited for).
- **Every statement with parameters in one round trip.** pg8000 waits
  after parse and after describe; here parse, describe, bind, execute and
  sync go out together (as libpq sends them) and the replies are read once.
- **Prepared statements, once per connection, on request.** A statement
  whose execution options carry ``prepared=True`` is parsed (and described)
  once per connection and afterwards executed by name: one round trip, no
  parse, and PostgreSQL may keep its plan. Only statements that ask for it:
  a generic plan is wrong for a query whose best plan depends on its
  parameters (search's filters), and each prepared statement holds server
  memory for the connection's life.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql.pg8000 import PGDialect_pg8000

from shared.db.engine import PREPARED
from shared.db.outage import sqlstate

__all__ = ["PREPARED", "LecternPg8000Dialect"]  # PREPARED re-exported from shared.db.engine

# Where a connection keeps its prepared statements (the pool's per-connection
# ``info``, which is emptied when the connection is replaced).
_CACHE_KEY = "lectern_prepared_statements"
# A connection prepares at most this many statements; later ones run unnamed.
MAX_PREPARED = 32


class LecternPg8000Dialect(PGDialect_pg8000):
    supports_statement_cache = True

    def do_begin(self, dbapi_connection: Any) -> None:
        raw = dbapi_connection.dbapi_connection
        if raw.autocommit or raw._in_transaction:
            return
        try:
            raw.execute_simple("begin transaction")
        except Exception as error:
            if not _dead_connection(error):
                raise
            # The same recovery SQLAlchemy's pre-ping uses: replace the
            # record's connection, keep the checkout.
            record = dbapi_connection._connection_record
            record.invalidate(error)
            dbapi_connection.dbapi_connection = record.get_connection()
            dbapi_connection.dbapi_connection.execute_simple("begin transaction")

    def do_commit(self, dbapi_connection: Any) -> None:
        dbapi_connection.dbapi_connection.execute_simple("commit")

    def do_rollback(self, dbapi_connection: Any) -> None:
        raw = dbapi_connection.dbapi_connection
        if raw._in_transaction:
            raw.execute_simple("rollback")

    def do_execute(self, cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        if not parameters or context is None:
            cursor.execute(statement, parameters)
            return
        from pg8000.converters import make_params  # type: ignore[import-untyped]

        fairy = context.root_connection.connection
        raw = fairy.dbapi_connection
        if not raw._in_transaction and not raw.autocommit:
            raw.execute_simple("begin transaction")
        params = make_params(raw.py_types, parameters)
        options = context.execution_options
        if all(options.get(key) == value for key, value in PREPARED.items()):
            result = _execute_prepared(fairy, raw, statement, parameters, params)
        else:
            result = _execute_pipelined(raw, _numbered(statement, parameters), params)
        # What pg8000's Cursor.execute leaves behind, so fetching works as usual.
        cursor._context = result
        cursor._row_iter = None if result.rows is None else iter(result.rows)
        cursor._input_oids = ()
        cursor.input_types = []


# SQL with %s placeholders -> with $1, $2 ... (pg8000's scanner, run once per text).
_NUMBERED: dict[str, str] = {}
# Distinct statements remembered; IN-lists of many lengths must not grow it forever.
_NUMBERED_LIMIT = 512


def _numbered(statement: str, parameters: Any) -> str:
    numbered = _NUMBERED.get(statement)
    if numbered is None:
        from pg8000.dbapi import convert_paramstyle  # type: ignore[import-untyped]

        numbered, _ = convert_paramstyle("format", statement, parameters)
        if len(_NUMBERED) < _NUMBERED_LIMIT:
            _NUMBERED[statement] = numbered
    return numbered


def _execute_pipelined(raw: Any, numbered: str, params: Any) -> Any:
    """Parse, describe, bind and execute the unnamed statement, then one Sync.

    pg8000 waits for the server after parse and after describe: three round
    trips for every statement. The protocol allows sending all of it at once
    (as libpq does); the replies arrive in order and pg8000's handlers fill
    one context from them (columns from the description before the rows).
    An error anywhere makes the server skip to the Sync and report it once.
    """
    from pg8000.core import NULL_BYTE, SYNC_MSG, Context, _flush, _write  # type: ignore[import-untyped]

    context = Context(numbered)
    raw.send_PARSE(NULL_BYTE, numbered, ())
    raw.send_DESCRIBE_STATEMENT(NULL_BYTE)
    raw.send_BIND(NULL_BYTE, params)
    raw.send_EXECUTE()
    _write(raw._sock, SYNC_MSG)
    _flush(raw._sock)
    raw.handle_messages(context)
    return context


def _execute_prepared(fairy: Any, raw: Any, statement: str, parameters: Any, params: Any) -> Any:
    cache: dict[str, tuple[Any, ...]] = fairy.info.setdefault(_CACHE_KEY, {})
    prepared = cache.get(statement)
    if prepared is None:
        numbered = _numbered(statement, parameters)
        if len(cache) >= MAX_PREPARED:
            return _execute_pipelined(raw, numbered, params)
        name, columns, input_funcs = raw.prepare_statement(numbered, oids=())
        prepared = cache[statement] = (name, columns, input_funcs, numbered)
    name, columns, input_funcs, numbered = prepared
    try:
        return raw.execute_named(name, params, columns, input_funcs, numbered)
    except Exception as error:
        if sqlstate(error) in _STALE_STATEMENT:
            # A migration changed what the statement returns (or the server
            # forgot it): forget it too, or every later call on this connection
            # fails the same way until the pool recycles it. This call still
            # fails; the next one prepares the statement again.
            cache.pop(statement, None)
        raise


# 0A000: "cached plan must not change result type"; 26000: no such prepared statement.
_STALE_STATEMENT = frozenset({"0A000", "26000"})


def _dead_connection(error: BaseException) -> bool:
    """A connection that is gone (reset, closed, refused), not one that is slow."""
    import pg8000.dbapi  # type: ignore[import-untyped]

    if isinstance(error, TimeoutError):
        return False
    if isinstance(error, OSError):
        return True
    if isinstance(error, pg8000.dbapi.InterfaceError):
        cause = error.__cause__ or error.__context__
        if isinstance(cause, TimeoutError):
            return False
        message = str(error.args[0]) if error.args else ""
        return isinstance(cause, OSError) or message.startswith(
            ("network error", "connection is closed")
        )
    return False


dialect = LecternPg8000Dialect

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
        options = {} if context is None else context.execution_options
        if not parameters or any(options.get(key) != value for key, value in PREPARED.items()):
            cursor.execute(statement, parameters)
            return
        fairy = context.root_connection.connection
        raw = fairy.dbapi_connection
        if not raw._in_transaction and not raw.autocommit:
            raw.execute_simple("begin transaction")
        cache: dict[str, tuple[Any, ...]] = fairy.info.setdefault(_CACHE_KEY, {})
        prepared = cache.get(statement)
        if prepared is None:
            if len(cache) >= MAX_PREPARED:
                cursor.execute(statement, parameters)
                return
            from pg8000.dbapi import convert_paramstyle  # type: ignore[import-untyped]

            numbered, _ = convert_paramstyle("format", statement, parameters)
            name, columns, input_funcs = raw.prepare_statement(numbered, oids=())
            prepared = cache[statement] = (name, columns, input_funcs, numbered)
        from pg8000.converters import make_params  # type: ignore[import-untyped]

        name, columns, input_funcs, numbered = prepared
        result = raw.execute_named(
            name, make_params(raw.py_types, parameters), columns, input_funcs, numbered
        )
        # What pg8000's Cursor.execute leaves behind, so fetching works as usual.
        cursor._context = result
        cursor._row_iter = None if result.rows is None else iter(result.rows)
        cursor._input_oids = ()
        cursor.input_types = []


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

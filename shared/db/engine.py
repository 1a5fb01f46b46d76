"""The engine factory shared by every function, the CLI and Alembic.

``DATABASE_URL`` connects with pg8000 directly (local stack, tests). Without
it, ``CLOUD_SQL_INSTANCE`` connects through cloud-sql-python-connector, which
is imported only on that path because it costs ~660 ms at cold start.

One engine per process, created on first use and reused by every request.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from shared.config import Settings

__all__ = ["build_engine", "dispose_engine", "get_engine", "transaction"]

_lock = threading.Lock()
_engine: Engine | None = None
_session_factory: sessionmaker[Session] | None = None
_connector: Any = None


def build_engine(settings: Settings) -> Engine:
    """A new engine for these settings; callers normally want ``get_engine``."""
    pool = {
        "pool_size": settings.DB_POOL_SIZE,
        "max_overflow": settings.DB_MAX_OVERFLOW,
        # Instances sleep between requests; a dead connection is found before use.
        "pool_pre_ping": True,
        "pool_recycle": 1800,
    }
    if settings.DATABASE_URL:
        return create_engine(settings.DATABASE_URL, **pool)
    return create_engine("postgresql+pg8000://", creator=_cloud_sql_creator(settings), **pool)


def _cloud_sql_creator(settings: Settings) -> Any:
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
        )

    return connect


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

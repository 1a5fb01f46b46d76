"""Full-text search on chunks, for hybrid (vector + lexical) retrieval.

``search_vector`` is generated from the chunk text with the 'simple'
configuration (lower-cased words, no stemming, no stop words): materials are
written in several languages, and a language's stemmer would mangle the
others. Meaning across word forms is left to the vector side. A GIN index
serves the ``@@`` match.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "material_chunks",
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed("to_tsvector('simple'::regconfig, content)", persisted=True),
            nullable=False,
        ),
    )
    op.create_index(
        "ix_material_chunks_search_vector",
        "material_chunks",
        ["search_vector"],
        unique=False,
        postgresql_using="gin",
    )


def downgrade() -> None:
    op.drop_index(
        "ix_material_chunks_search_vector", table_name="material_chunks", postgresql_using="gin"
    )
    op.drop_column("material_chunks", "search_vector")

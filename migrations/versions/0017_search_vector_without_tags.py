"""Search quality: chunks' full-text vector no longer loses words around ``<`` and ``>``.

PostgreSQL's default text search parser reads ``<...>`` as an XML tag and
skips it whole, so "i<j and foo->bar" was indexed as "i", "and", "bar":
the words of code, formulas and man pages ("<file>", "a->next") could not
be found. The generated ``search_vector`` now turns ``<`` and ``>`` into
spaces first. A generated column's expression cannot be altered in place
before PostgreSQL 17, so the column and its GIN index are re-created (one
table rewrite, run before the new code is deployed, like 0014; before 0018,
whose HNSW build a later rewrite would redo).

Written as 0011 first, but 0011 had already landed empty (databases record
it as applied), so the change is this later revision; on a database that
ran it as 0011 during development, re-creating the column again is harmless.

Revision ID: 0017
Revises: 0016
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_material_chunks_search_vector"
WITHOUT_TAGS = "to_tsvector('simple'::regconfig, translate(content, '<>', '  '))"
AS_BEFORE = "to_tsvector('simple'::regconfig, content)"


def _generate(expression: str) -> None:
    op.drop_index(INDEX, table_name="material_chunks", postgresql_using="gin")
    op.drop_column("material_chunks", "search_vector")
    op.add_column(
        "material_chunks",
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed(expression, persisted=True),
            nullable=False,
        ),
    )
    op.create_index(
        INDEX, "material_chunks", ["search_vector"], unique=False, postgresql_using="gin"
    )


def upgrade() -> None:
    _generate(WITHOUT_TAGS)


def downgrade() -> None:
    _generate(AS_BEFORE)

"""Ingestion hardening: an error code beside the user-facing sentence, and the sweep's index.

``ingest_error`` used to carry exception text (SQL and its parameters, an
upstream API's answer); it becomes the fixed sentence of
``ingest_error_code``. Existing rows are rewritten from what their text says.

Revision ID: 0005
Revises: 0004
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copy of shared.pipeline.ERROR_MESSAGES as of this revision.
MESSAGES = {
    "pdf_encrypted": "The PDF is encrypted, so its text cannot be read.",
    "pdf_damaged": "The PDF is damaged and its text cannot be read.",
    "no_text": "The PDF has no extractable text (a scan without OCR?).",
    "object_missing": "The stored file no longer exists.",
    "embedding_unavailable": "The embedding service was unavailable.",
    "storage_unavailable": "The file storage was unavailable.",
    "database_unavailable": "The database was unavailable.",
    "interrupted": "Processing stopped before it finished.",
    "internal": "An internal error stopped processing.",
}
CODES = ", ".join(f"'{code}'" for code in MESSAGES)


def upgrade() -> None:
    op.add_column("materials", sa.Column("ingest_error_code", sa.Text(), nullable=True))
    op.create_check_constraint(
        op.f("ck_materials_ingest_error_code"), "materials", f"ingest_error_code IN ({CODES})"
    )
    op.create_index(
        "ix_materials_ingest_pending",
        "materials",
        ["created_at"],
        postgresql_where=sa.text("ingest_status IN ('queued', 'processing')"),
    )
    # Old free text → a code, by what the old code wrote for each case.
    op.execute(
        """
        UPDATE materials SET ingest_error_code = CASE
            WHEN ingest_status = 'no_text' THEN 'no_text'
            WHEN ingest_error LIKE '%encrypted%' THEN 'pdf_encrypted'
            WHEN ingest_error LIKE '%damaged%' THEN 'pdf_damaged'
            WHEN ingest_error LIKE '%no longer exists%' THEN 'object_missing'
            ELSE 'internal' END
        WHERE ingest_error IS NOT NULL AND ingest_status <> 'ready'
        """
    )
    op.execute("UPDATE materials SET ingest_error = NULL WHERE ingest_status = 'ready'")
    materials = sa.table(
        "materials", sa.column("ingest_error", sa.Text), sa.column("ingest_error_code", sa.Text)
    )
    for code, message in MESSAGES.items():
        op.execute(
            materials.update()
            .where(materials.c.ingest_error_code == code)
            .values(ingest_error=message)
        )


def downgrade() -> None:
    op.drop_index("ix_materials_ingest_pending", table_name="materials")
    op.drop_constraint(op.f("ck_materials_ingest_error_code"), "materials", type_="check")
    op.drop_column("materials", "ingest_error_code")

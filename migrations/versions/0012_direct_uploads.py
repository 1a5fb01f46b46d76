"""Direct uploads: files sent straight to the bucket, then completed (submit /uploads).

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "direct_uploads",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("user_id", sa.UUID(), nullable=False),
        sa.Column("object_name", sa.Text(), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default="open", nullable=False),
        sa.Column("request_id", sa.UUID(), nullable=True),
        sa.Column("error", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'completed', 'failed')", name=op.f("ck_direct_uploads_status")
        ),
        sa.CheckConstraint("size_bytes > 0", name=op.f("ck_direct_uploads_size_bytes")),
        sa.CheckConstraint(
            "(status = 'completed') = (request_id IS NOT NULL)",
            name=op.f("ck_direct_uploads_completed_request"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_direct_uploads_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["file_requests.id"],
            name=op.f("fk_direct_uploads_request_id_file_requests"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_direct_uploads")),
        sa.UniqueConstraint("object_name", name=op.f("uq_direct_uploads_object_name")),
    )
    op.create_index("ix_direct_uploads_user_created", "direct_uploads", ["user_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_direct_uploads_user_created", table_name="direct_uploads")
    op.drop_table("direct_uploads")

"""Object intents: bucket writes recorded before they happen (shared.sweep).

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "object_intents",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=True),
        sa.Column("request_id", sa.UUID(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_object_intents")),
    )
    op.create_index("ix_object_intents_name", "object_intents", ["name"])
    op.create_index("ix_object_intents_created_at", "object_intents", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_object_intents_created_at", table_name="object_intents")
    op.drop_index("ix_object_intents_name", table_name="object_intents")
    op.drop_table("object_intents")

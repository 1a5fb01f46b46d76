"""Unpublish instead of delete: materials.is_published.

Undoing an approval used to delete the material, and with it (ON DELETE
CASCADE) every student's notes, reading progress, recent files and the
chunks. Now it hides the row; approving again shows it with all of that.

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "materials",
        sa.Column("is_published", sa.Boolean(), server_default=sa.true(), nullable=False),
    )
    op.add_column(
        "materials", sa.Column("unpublished_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    # Hidden materials did not exist before: they go, as an undo used to remove them.
    op.execute("DELETE FROM materials WHERE NOT is_published")
    op.drop_column("materials", "unpublished_at")
    op.drop_column("materials", "is_published")

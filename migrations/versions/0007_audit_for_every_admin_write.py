"""The audit log for every admin write: any snake_case action, CLI rows, filters.

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_ACTIONS = (
    "action IN ('approve', 'reject', 'bulk_approve', 'bulk_reject', 'undo_approve', "
    "'undo_reject', 'bulk_undo_approve', 'bulk_undo_reject')"
)


def upgrade() -> None:
    op.drop_constraint(op.f("ck_audit_logs_action"), "audit_logs", type_="check")
    op.create_check_constraint("action", "audit_logs", "action ~ '^[a-z][a-z_]{0,63}$'")
    op.alter_column("audit_logs", "actor_id", existing_type=sa.UUID(), nullable=True)
    op.drop_index("ix_audit_logs_timestamp", table_name="audit_logs")
    op.create_index(
        "ix_audit_logs_timestamp_id",
        "audit_logs",
        [sa.text("timestamp DESC"), sa.text("id DESC")],
    )
    op.create_index(
        "ix_audit_logs_actor_id_timestamp", "audit_logs", ["actor_id", sa.text("timestamp DESC")]
    )
    op.create_index(
        "ix_audit_logs_action_timestamp", "audit_logs", ["action", sa.text("timestamp DESC")]
    )
    op.create_index(
        "ix_audit_logs_target_ids", "audit_logs", ["target_ids"], postgresql_using="gin"
    )


def downgrade() -> None:
    op.drop_index("ix_audit_logs_target_ids", table_name="audit_logs")
    op.drop_index("ix_audit_logs_action_timestamp", table_name="audit_logs")
    op.drop_index("ix_audit_logs_actor_id_timestamp", table_name="audit_logs")
    op.drop_index("ix_audit_logs_timestamp_id", table_name="audit_logs")
    op.create_index("ix_audit_logs_timestamp", "audit_logs", ["timestamp"])
    # Rows written by the CLI (no actor) or with newer actions cannot go back.
    op.alter_column("audit_logs", "actor_id", existing_type=sa.UUID(), nullable=False)
    op.drop_constraint(op.f("ck_audit_logs_action"), "audit_logs", type_="check")
    op.create_check_constraint("action", "audit_logs", OLD_ACTIONS)

"""Reading progress per user and file, across sessions (resume).

``reading_progress`` holds one row per user and file: the seconds credited so
far over all the user's sessions on it, whether it was completed (once, never
undone) and ``credited_through``, the wall-clock moment up to which reading
time has been credited, which caps parallel sessions together (see
``shared.reading``).

Backfill from the existing sessions: before this revision every session
started from zero, so the user's credited seconds are the sum over their
sessions; a file is complete if one of its sessions completed (a file whose
sum reaches the required time without any completed session completes, and
earns its XP, on its next beat); ``credited_through`` is the latest
``started_at + active_seconds`` of its sessions, so a session still open
across the deploy keeps exactly the wall-clock cap it had.

Revision ID: 0015
Revises: 0014
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reading_progress",
        sa.Column("user_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("file_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("active_seconds", sa.Integer(), server_default="0", nullable=False),
        sa.Column("is_complete", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "credited_through",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("active_seconds >= 0", name=op.f("ck_reading_progress_active_seconds")),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["materials.id"],
            name=op.f("fk_reading_progress_file_id_materials"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_reading_progress_user_id_users")
        ),
        sa.PrimaryKeyConstraint("user_id", "file_id", name=op.f("pk_reading_progress")),
    )
    op.create_index("ix_reading_progress_file_id", "reading_progress", ["file_id"], unique=False)
    op.execute(
        """
        INSERT INTO reading_progress
               (user_id, file_id, active_seconds, is_complete, completed_at,
                credited_through, updated_at)
        SELECT user_id, file_id,
               LEAST(sum(active_seconds), 2147483647)::int,
               bool_or(is_complete),
               min(completed_at),
               max(started_at + make_interval(secs => active_seconds)),
               max(last_beat_at)
          FROM file_viewing_sessions
         GROUP BY user_id, file_id
        """
    )


def downgrade() -> None:
    # Sessions keep their own seconds; only the cross-session sum goes.
    op.drop_index("ix_reading_progress_file_id", table_name="reading_progress")
    op.drop_table("reading_progress")

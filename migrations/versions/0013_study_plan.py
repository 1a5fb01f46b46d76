"""Study plans: tasks link to the file they read and to the plan that made them.

``user_tasks`` gains ``file_id`` (the material to open), ``plan_id`` (set only
on tasks ``POST /tasks/plan`` made; re-planning replaces those, never
hand-made ones) and ``course_id`` (the course the plan is for). All nullable:
existing tasks are hand-made. ``SET NULL`` because a task is the student's and
outlives the row it points to. No index on the two foreign keys: materials
and courses are deleted rarely (an admin, a downgrade), and re-planning finds
its tasks through ``ix_user_tasks_user_date``.

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("user_tasks", sa.Column("file_id", postgresql.UUID(as_uuid=True)))
    op.add_column("user_tasks", sa.Column("plan_id", postgresql.UUID(as_uuid=True)))
    op.add_column("user_tasks", sa.Column("course_id", postgresql.UUID(as_uuid=True)))
    op.create_foreign_key(
        "fk_user_tasks_file_id_materials",
        "user_tasks",
        "materials",
        ["file_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.create_foreign_key(
        "fk_user_tasks_course_id_courses",
        "user_tasks",
        "courses",
        ["course_id"],
        ["id"],
        ondelete="SET NULL",
    )


def downgrade() -> None:
    # Plan tasks stay as ordinary tasks; only their links go.
    op.drop_constraint("fk_user_tasks_course_id_courses", "user_tasks", type_="foreignkey")
    op.drop_constraint("fk_user_tasks_file_id_materials", "user_tasks", type_="foreignkey")
    op.drop_column("user_tasks", "course_id")
    op.drop_column("user_tasks", "plan_id")
    op.drop_column("user_tasks", "file_id")

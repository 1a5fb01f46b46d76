"""Admin API: withdrawn requests, and the indexes of the users list and the stats.

- ``file_requests.status`` accepts ``withdrawn`` (an uploader's ``DELETE
  /submit/{id}``); the live-duplicate unique index keeps covering pending and
  approved only, so a withdrawn file may be submitted again.
- ``users (created_at, id)`` and ``users (role, created_at, id)``: keyset pages
  of ``GET /moderate/users``, users by role, the last-admin lock.
- ``materials (ingest_status)``: materials by ingest status in ``GET /moderate/stats``.

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES_0009 = "status IN ('pending', 'approved', 'rejected', 'withdrawn')"
STATUSES_0008 = "status IN ('pending', 'approved', 'rejected')"


def upgrade() -> None:
    op.drop_constraint(op.f("ck_file_requests_status"), "file_requests", type_="check")
    op.create_check_constraint("status", "file_requests", STATUSES_0009)
    op.create_index("ix_users_created_id", "users", ["created_at", "id"])
    op.create_index("ix_users_role_created_id", "users", ["role", "created_at", "id"])
    op.create_index("ix_materials_ingest_status", "materials", ["ingest_status"])


def downgrade() -> None:
    op.drop_index("ix_materials_ingest_status", table_name="materials")
    op.drop_index("ix_users_role_created_id", table_name="users")
    op.drop_index("ix_users_created_id", table_name="users")
    # No withdrawn status before: such a request reads as rejected (its file is gone).
    op.execute(
        "UPDATE file_requests SET status = 'rejected', "
        "admin_note = coalesce(admin_note, 'Withdrawn by the uploader.') "
        "WHERE status = 'withdrawn'"
    )
    op.drop_constraint(op.f("ck_file_requests_status"), "file_requests", type_="check")
    op.create_check_constraint("status", "file_requests", STATUSES_0008)

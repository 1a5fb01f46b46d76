"""Ledger idempotency keys per approval episode.

The seed's UNIQUE (request_id, action) allowed one upload_approval row per
request, ever: approve -> undo -> approve could not award again, and the undo
had no way to write its compensation under the same action. It is replaced by
one scheme for every award: ``source_id`` is required and unique, and names
the event that earned the row.

- ``file_requests.approval_episode`` counts approvals of a request. Approval
  number N writes ``upload_approval:<request_id>:<N>``; undoing it writes
  ``upload_approval_revoked:<request_id>:<N>`` (action upload_approval_revoked,
  the negated amount). A retried approve or undo of the same episode hits the
  unique key and writes nothing, so the uploader holds the XP exactly while
  the request is approved.
- ``file_completed:<user_id>:<file_id>`` and
  ``course_complete:<user_id>:<course_id>``: once per user per file or course,
  ever (the seed's per-session key let a second session earn again).

Also: materials.file_url is unique (two materials never share an object).

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD_ACTIONS = "action IN ('upload_approval', 'file_completed', 'course_complete')"
_NEW_ACTIONS = (
    "action IN ('upload_approval', 'upload_approval_revoked', 'file_completed', 'course_complete')"
)


def upgrade() -> None:
    op.add_column(
        "file_requests",
        sa.Column("approval_episode", sa.Integer(), server_default="0", nullable=False),
    )
    op.create_unique_constraint(op.f("uq_materials_file_url"), "materials", ["file_url"])
    # Rows written before this revision all carry a key (the code always set one).
    op.alter_column("points_transactions", "source_id", existing_type=sa.TEXT(), nullable=False)
    op.drop_constraint(
        op.f("uq_points_transactions_request_id_action"), "points_transactions", type_="unique"
    )
    op.drop_constraint(op.f("ck_points_transactions_action"), "points_transactions", type_="check")
    op.create_check_constraint(op.f("ck_points_transactions_action"), "points_transactions", _NEW_ACTIONS)


def downgrade() -> None:
    op.drop_constraint(op.f("ck_points_transactions_action"), "points_transactions", type_="check")
    op.create_check_constraint(op.f("ck_points_transactions_action"), "points_transactions", _OLD_ACTIONS)
    op.create_unique_constraint(
        op.f("uq_points_transactions_request_id_action"),
        "points_transactions",
        ["request_id", "action"],
    )
    op.alter_column("points_transactions", "source_id", existing_type=sa.TEXT(), nullable=True)
    op.drop_constraint(op.f("uq_materials_file_url"), "materials", type_="unique")
    op.drop_column("file_requests", "approval_episode")

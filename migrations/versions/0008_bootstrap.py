"""Bootstrap: the seed's material types on an empty database, and role_grants.

A fresh install has nothing to pick when a student uploads; the seed's five
material types are what every install starts with. They are inserted only
when the table is empty (an install that already chose its own types keeps
them as they are), with ids derived from their names, so every install has the
same ids and the downgrade removes exactly these rows (and only while no file
refers to them).

``role_grants`` holds roles promised to emails that have not signed in yet:
``lectern admin grant`` makes the first admin of an install before anyone has
signed in.

Revision ID: 0008
Revises: 0007
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The seed's material_types.display_name values (seed-database-wiki.txt).
SEEDED_TYPES = ("Slides", "Exam", "Lecture Notes", "Summary", "Homework")


def seeded_type_id(name: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"lectern:material_type:{name}")


def upgrade() -> None:
    op.create_table(
        "role_grants",
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column(
            "granted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("granted_by", sa.Text(), nullable=False),
        sa.CheckConstraint("role IN ('STUDENT', 'ADMIN')", name=op.f("ck_role_grants_role")),
        sa.CheckConstraint(
            "email = lower(email)", name=op.f("ck_role_grants_email_lowercase")
        ),
        sa.PrimaryKeyConstraint("email", name=op.f("pk_role_grants")),
    )
    # Whether the table is empty is taken once, before any insert: the seeded
    # types go in together or not at all.
    empty = op.get_bind().scalar(sa.text("SELECT NOT EXISTS (SELECT FROM material_types)"))
    if empty:
        insert = sa.text(
            "INSERT INTO material_types (id, display_name) VALUES (CAST(:id AS uuid), :name) "
            "ON CONFLICT DO NOTHING"
        )
        for name in SEEDED_TYPES:
            op.execute(insert.bindparams(id=str(seeded_type_id(name)), name=name))


def downgrade() -> None:
    # Only the rows this migration made, and only those no file refers to.
    for name in SEEDED_TYPES:
        op.execute(
            sa.text(
                "DELETE FROM material_types WHERE id = CAST(:id AS uuid) "
                "AND NOT EXISTS (SELECT FROM file_requests WHERE type_id = material_types.id) "
                "AND NOT EXISTS (SELECT FROM materials WHERE type_id = material_types.id)"
            ).bindparams(id=str(seeded_type_id(name)))
        )
    op.drop_table("role_grants")

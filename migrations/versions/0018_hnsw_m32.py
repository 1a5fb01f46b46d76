"""The chunks' HNSW graph built with m = 32, ef_construction = 128.

With m = 16, ef_construction = 64, recall@10 of the production vector arm
at 100k chunks was 0.951 at ef_search 600 (0.91 for queries that fall
between two topics); the denser graph gives 1.000 at a p95 of 13.4 ms for
the arm (docs/benchmarks.md, "Search recall and latency"). It costs a
slower build and insert (about twice the neighbours to maintain) and a few
percent more index (the 3 KB halfvec dominates each element, not its
neighbour list). Rebuilt with CREATE INDEX, not CONCURRENTLY, as in 0014:
migrations run before the new code is deployed (cloudbuild.yaml), in one
transaction that holds the table's lock from the DROP on, so while it
builds, searches and ingestion writes fail with 503 after
``DB_LOCK_TIMEOUT_MS`` (docs/operators.md, "Migrations": minutes at 100k
chunks; run it at a quiet hour). ``maintenance_work_mem`` is raised for the
build alone: an HNSW graph that does not fit it is built on disk, many
times slower.

Revision ID: 0018
Revises: 0017
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_material_chunks_embedding_hnsw"


# For this transaction only; Cloud SQL lets a database user set it. Size it to
# the instance: the graph of 100k chunks is about 400 MB.
MAINTENANCE_WORK_MEM = "1GB"


def _rebuild(m: int, ef_construction: int) -> None:
    op.execute(f"SET LOCAL maintenance_work_mem = '{MAINTENANCE_WORK_MEM}'")
    op.drop_index(INDEX, table_name="material_chunks")
    op.execute(
        f"CREATE INDEX {INDEX} ON material_chunks USING hnsw (embedding halfvec_cosine_ops) "
        f"WITH (m = {m}, ef_construction = {ef_construction})"
    )


def upgrade() -> None:
    _rebuild(32, 128)


def downgrade() -> None:
    _rebuild(16, 64)

"""Chunk embeddings in half precision: halfvec(1536) with halfvec_cosine_ops.

Half the heap and half the HNSW index of vector(1536), with no measurable
loss of recall@10 (docs/scaling.md): at 10M chunks that is the difference
between an index that fits a mid-size Cloud SQL tier's memory and one that
does not. The index is rebuilt (CREATE INDEX, not CONCURRENTLY: migrations
run before the new code is deployed, see cloudbuild.yaml).

Revision ID: 0014
Revises: 0013
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_material_chunks_embedding_hnsw"


def _retype(column_type: str, ops: str) -> None:
    op.drop_index(INDEX, table_name="material_chunks")
    op.execute(
        f"ALTER TABLE material_chunks ALTER COLUMN embedding TYPE {column_type} "
        f"USING embedding::{column_type}"
    )
    op.execute(
        f"CREATE INDEX {INDEX} ON material_chunks USING hnsw (embedding {ops}) "
        "WITH (m = 16, ef_construction = 64)"
    )


def upgrade() -> None:
    _retype("halfvec(1536)", "halfvec_cosine_ops")


def downgrade() -> None:
    _retype("vector(1536)", "vector_cosine_ops")

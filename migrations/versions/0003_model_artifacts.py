"""Model artifacts: the bytes of every accepted model, content-addressed, shared by all replicas.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

Versions accepted before this revision have their bytes only in some replica's MODEL_STORE_DIR: at
start, `flight-delay serve` copies the ones it finds there, checked against their sha256, into this
table (ArtifactStore.backfill).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Creates model_artifacts (BLOB on SQLite, BYTEA on PostgreSQL)."""
    op.create_table(
        "model_artifacts",
        sa.Column("sha256", sa.String(length=64), primary_key=True),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drops model_artifacts: replicas then serve only what their local store holds."""
    op.drop_table("model_artifacts")

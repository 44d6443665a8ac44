"""Heartbeat: the one row /health/ rewrites to prove the database takes writes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Creates the heartbeat table with its one row."""
    heartbeat = op.create_table(
        "heartbeat",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.bulk_insert(heartbeat, [{"id": 1, "beat_at": datetime.now(UTC)}])


def downgrade() -> None:
    """Drops the heartbeat table."""
    op.drop_table("heartbeat")

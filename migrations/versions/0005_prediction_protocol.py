"""Predictions name the protocol they came by: native, v2 (Open Inference Protocol) or mlflow.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

A column with a constant default: PostgreSQL (11 and later) and SQLite add it without rewriting the
predictions table, whatever its size; the rows already there read as `native`, the only protocol
served before this revision.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Adds predictions.protocol, `native` for every existing row."""
    op.add_column(
        "predictions",
        sa.Column("protocol", sa.String(length=16), nullable=False, server_default="native"),
    )


def downgrade() -> None:
    """Drops predictions.protocol (SQLite rebuilds the table: batch mode)."""
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("protocol")

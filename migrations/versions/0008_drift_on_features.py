"""Monitoring kept by a background job: the features each prediction was scored with, live accuracy per hour.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

predictions.features: a nullable column, added without rewriting the table on either backend (rows
written before read as null: their model's drift falls back to what it can report). monitoring_live
starts empty: the roll-up job (`flight-delay rollup`, started by `flight-delay serve`) fills it. The
index on actuals is built over the existing rows (seconds for a million).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    """Adds predictions.features, monitoring_live and the index of actuals by recording time."""
    op.add_column("predictions", sa.Column("features", JSON, nullable=True))
    op.create_index("ix_actuals_model_version_recorded_at", "actuals", ["model_version", "recorded_at"])
    op.create_table(
        "monitoring_live",
        sa.Column(
            "model_version", sa.String(length=64), sa.ForeignKey("model_versions.version"), primary_key=True
        ),
        sa.Column("hour", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("abs_error", sa.Float(), nullable=False),
        sa.Column("squared_error", sa.Float(), nullable=False),
        sa.Column("error", sa.Float(), nullable=False),
    )


def downgrade() -> None:
    """Drops what upgrade added (the recorded features included)."""
    op.drop_table("monitoring_live")
    op.drop_index("ix_actuals_model_version_recorded_at", table_name="actuals")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("features")

"""Monitoring: actual arrival delays of predictions, and the hourly bin counts drift is measured on.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

Adds tables only: the predictions table is not rewritten, whatever its size. monitoring_counts starts
empty; the first report on a model counts its past hours once (monitoring/rollup.py).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Creates actuals, monitoring_counts and monitoring_rollups."""
    op.create_table(
        "actuals",
        sa.Column(
            "history_id", BIG_ID, sa.ForeignKey("predictions.id"), primary_key=True, autoincrement=False
        ),
        sa.Column(
            "model_version", sa.String(length=64), sa.ForeignKey("model_versions.version"), nullable=False
        ),
        sa.Column("predicted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("predicted", sa.Float(), nullable=False),
        sa.Column("arr_delay", sa.Float(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_actuals_model_version_predicted_at",
        "actuals",
        ["model_version", "predicted_at", "predicted", "arr_delay"],  # covers live accuracy's aggregate
    )
    op.create_table(
        "monitoring_counts",
        sa.Column(
            "model_version", sa.String(length=64), sa.ForeignKey("model_versions.version"), primary_key=True
        ),
        sa.Column("hour", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("field", sa.String(length=64), primary_key=True),
        sa.Column("bin", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "monitoring_rollups",
        sa.Column(
            "model_version", sa.String(length=64), sa.ForeignKey("model_versions.version"), primary_key=True
        ),
        sa.Column("rolled_until", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drops the three tables (recorded actuals included)."""
    op.drop_table("monitoring_rollups")
    op.drop_table("monitoring_counts")
    op.drop_index("ix_actuals_model_version_predicted_at", table_name="actuals")
    op.drop_table("actuals")

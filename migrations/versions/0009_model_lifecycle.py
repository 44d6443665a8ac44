"""A model's life: candidates, the traffic split (canary, shadow), rollbacks, the audit, replay jobs.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08

Adds tables and nullable columns only: neither the predictions nor the activations are rewritten,
whatever their size, on either backend. The activations already there get their `previous_id` (the
activation each replaced), so that a rollback right after the upgrade returns to the version served
before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
VERSION = sa.String(length=64)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    """Adds predictions.shadow_of, model_activations.previous_id and the three lifecycle tables."""
    op.add_column("predictions", sa.Column("shadow_of", BIG_ID, nullable=True))
    op.add_column("model_activations", sa.Column("previous_id", BIG_ID, nullable=True))
    link_previous_activations()
    create_traffic()
    create_audit()
    create_replay_jobs()


def link_previous_activations() -> None:
    """Points each existing activation at the one it replaced (the same version again: where that pointed)."""
    connection = op.get_bind()
    rows = connection.execute(sa.text("SELECT id, version FROM model_activations ORDER BY id")).all()
    top: tuple[int, str, int | None] | None = None
    for row_id, version in rows:
        previous = None if top is None else (top[2] if top[1] == version else top[0])
        connection.execute(
            sa.text("UPDATE model_activations SET previous_id = :previous WHERE id = :id"),
            {"previous": previous, "id": row_id},
        )
        top = (row_id, version, previous)


def create_traffic() -> None:
    """The one traffic row: no canary, no shadow."""
    traffic = op.create_table(
        "model_traffic",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("canary_version", VERSION, sa.ForeignKey("model_versions.version"), nullable=True),
        sa.Column("canary_percent", sa.Float(), nullable=False, server_default="0"),
        sa.Column("shadow_version", VERSION, sa.ForeignKey("model_versions.version"), nullable=True),
        sa.Column("revision", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.bulk_insert(traffic, [{"id": 1, "canary_percent": 0.0, "revision": 0}])


def create_audit() -> None:
    """The audit of every change to the models served, appended to only."""
    op.create_table(
        "model_audit",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("version", VERSION, nullable=True),
        sa.Column("previous", VERSION, nullable=True),
        sa.Column("percent", sa.Float(), nullable=True),
        sa.Column("by", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
    )


def create_replay_jobs() -> None:
    """Replay jobs, readable by any replica."""
    op.create_table(
        "replay_jobs",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("version", VERSION, sa.ForeignKey("model_versions.version"), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("flights", sa.BigInteger(), nullable=False),
        sa.Column("scored", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("result", JSON, nullable=True),
        sa.Column("error", JSON, nullable=True),
        sa.Column("by", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drops the lifecycle tables and columns (SQLite rebuilds the two tables: batch mode)."""
    op.drop_table("replay_jobs")
    op.drop_table("model_audit")
    op.drop_table("model_traffic")
    with op.batch_alter_table("model_activations") as batch:
        batch.drop_column("previous_id")
    with op.batch_alter_table("predictions") as batch:
        batch.drop_column("shadow_of")

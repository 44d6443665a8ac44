"""Native model forms and the history's time-ordered indexes.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

model_versions.native_sha256 names the native form the model sandbox wrote of a version (kept in
model_artifacts); versions accepted before have none, and the first worker that needs one puts the
stored upload through the sandbox once (serving/registry.py).

The history is listed newest first by (created_at, id): each filter's index now ends with those two
columns (created_at; model_version; request_id). Building them reads the whole predictions table once:
about 7 s per million rows on SQLite, 3 s on PostgreSQL (bench/PROFILE.md), writes waiting meanwhile.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (old index, its columns) -> (new index, its columns)
INDEXES = (
    (("ix_predictions_created_at", ["created_at"]), ("ix_predictions_created_at_id", ["created_at", "id"])),
    (
        ("ix_predictions_model_version_id", ["model_version", "id"]),
        ("ix_predictions_model_version_created_at_id", ["model_version", "created_at", "id"]),
    ),
    (
        ("ix_predictions_request_id", ["request_id"]),
        ("ix_predictions_request_id_created_at_id", ["request_id", "created_at", "id"]),
    ),
)


def upgrade() -> None:
    """Adds model_versions.native_sha256; replaces the history's indexes by time-ordered ones."""
    op.add_column("model_versions", sa.Column("native_sha256", sa.String(length=64), nullable=True))
    for (old, _), (new, columns) in INDEXES:
        op.create_index(new, "predictions", columns)
        op.drop_index(old, table_name="predictions")


def downgrade() -> None:
    """Restores the previous indexes and drops model_versions.native_sha256."""
    for (old, columns), (new, _) in INDEXES:
        op.create_index(old, "predictions", columns)
        op.drop_index(new, table_name="predictions")
    op.drop_column("model_versions", "native_sha256")  # SQLite 3.35+ drops a column in place

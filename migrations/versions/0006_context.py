"""Context: posted flights and weather observations, and the revision that orders posts.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

Adds tables only. context_revisions starts with its one row at revision 0.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Creates context_revisions (with its row), context_flights and context_weather, with their indexes."""
    revisions = op.create_table(
        "context_revisions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(revisions, [{"id": 1, "revision": 0}])
    create_flights()
    create_weather()


def create_flights() -> None:
    """The posted flights, keyed by scheduled date, carrier, flight number and origin."""
    op.create_table(
        "context_flights",
        sa.Column("flight_date", sa.Date(), primary_key=True),
        sa.Column("carrier", sa.String(length=2), primary_key=True),
        sa.Column("flight", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("origin", sa.String(length=3), primary_key=True),
        sa.Column("id", sa.BigInteger(), nullable=True),
        *[sa.Column(name, sa.Integer(), nullable=False) for name in ("year", "month", "day")],
        sa.Column("dep_time", sa.Integer(), nullable=True),
        sa.Column("sched_dep_time", sa.Integer(), nullable=False),
        sa.Column("dep_delay", sa.Float(), nullable=True),
        sa.Column("arr_time", sa.Integer(), nullable=True),
        sa.Column("sched_arr_time", sa.Integer(), nullable=True),
        sa.Column("arr_delay", sa.Float(), nullable=True),
        sa.Column("tailnum", sa.String(length=10), nullable=True),
        sa.Column("dest", sa.String(length=3), nullable=True),
        sa.Column("air_time", sa.Float(), nullable=True),
        sa.Column("distance", sa.Float(), nullable=True),
        sa.Column("hour", sa.Integer(), nullable=True),
        sa.Column("minute", sa.Integer(), nullable=True),
        sa.Column("time_hour", sa.String(length=40), nullable=True),
        sa.Column("name", sa.String(length=128), nullable=True),
        sa.Column("scheduled_at", TIME, nullable=False),
        sa.Column("known_until", TIME, nullable=True),
        sa.Column("relevant_until", TIME, nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("posted_at", TIME, nullable=False),
    )
    op.create_index("ix_context_flights_revision", "context_flights", ["revision"])
    op.create_index("ix_context_flights_relevant_until", "context_flights", ["relevant_until"])
    op.create_index("ix_context_flights_known_until", "context_flights", ["known_until"])


def create_weather() -> None:
    """The hourly weather observations, keyed by origin and time_hour."""
    op.create_table(
        "context_weather",
        sa.Column("origin", sa.String(length=3), primary_key=True),
        sa.Column("time_hour", TIME, primary_key=True),
        *[sa.Column(name, sa.Integer(), nullable=True) for name in ("year", "month", "day", "hour")],
        *[
            sa.Column(name, sa.Float(), nullable=True)
            for name in (
                "temp",
                "dewp",
                "humid",
                "wind_dir",
                "wind_speed",
                "wind_gust",
                "precip",
                "pressure",
                "visib",
            )
        ],
        sa.Column("known_at", TIME, nullable=False),
        sa.Column("revision", sa.BigInteger(), nullable=False),
        sa.Column("posted_at", TIME, nullable=False),
    )
    op.create_index("ix_context_weather_revision", "context_weather", ["revision"])
    op.create_index("ix_context_weather_known_at", "context_weather", ["known_at"])


def downgrade() -> None:
    """Drops the three tables (posted flights and weather included)."""
    op.drop_index("ix_context_weather_known_at", table_name="context_weather")
    op.drop_index("ix_context_weather_revision", table_name="context_weather")
    op.drop_table("context_weather")
    for name in ("known_until", "relevant_until", "revision"):
        op.drop_index(f"ix_context_flights_{name}", table_name="context_flights")
    op.drop_table("context_flights")
    op.drop_table("context_revisions")

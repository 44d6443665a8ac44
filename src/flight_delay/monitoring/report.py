"""Live accuracy and drift of a model over a window of its history, and the actual delays they rest on.

Drift is counted per hour once an hour is over (plus ROLLUP_GRACE, which outlasts any request still
committing rows of that hour) into monitoring_counts; a report adds the whole hours of its window from
there and counts the rest (its partial first and last hours, the hours not rolled up yet) from the
history itself. Both are SQL aggregates; nothing of the window is loaded row by row.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import insert

from flight_delay.errors import ModelNotLoaded, UnknownModelVersion, UnknownPrediction
from flight_delay.history.database import Database
from flight_delay.history.models import InputCount, utcnow
from flight_delay.monitoring import queries
from flight_delay.monitoring.profile import FieldProfile, TrainingProfile
from flight_delay.monitoring.queries import ALL_ROWS, LiveFigures, Range
from flight_delay.monitoring.versions import split_versions

PSI_EPSILON = 1e-4  # stands in for an empty bin's share, so that PSI stays finite
DEFAULT_PSI_THRESHOLD = 0.2
ROLLUP_GRACE = timedelta(minutes=5)
ROLLUP_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)  # no prediction is older: rollups start here
HOUR = timedelta(hours=1)
Counts = dict[str, Counter[int]]


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of `actual` shares against `expected`, empty bins at PSI_EPSILON."""
    total = 0.0
    for p, q in zip(expected, actual, strict=True):
        p, q = max(p, PSI_EPSILON), max(q, PSI_EPSILON)
        total += (q - p) * math.log(q / p)
    return total


def floor_hour(moment: datetime) -> datetime:
    """The start of a moment's UTC hour."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    """The first hour start at or after a moment."""
    floor = floor_hour(moment)
    return floor if floor == moment else floor + HOUR


def split_window(window: Range, rolled_until: datetime) -> tuple[Range | None, list[Range]]:
    """Splits [since, until) into whole hours already rolled up and the ranges to count from the history."""
    since, until = window
    first = max(ceil_hour(since), ROLLUP_ORIGIN) if since is not None else ROLLUP_ORIGIN
    last = min(floor_hour(until), rolled_until) if until is not None else rolled_until
    if first >= last:
        return None, [window]
    raw = [(since, first)] if since is None or since < first else []
    if until is None or until > last:
        raw.append((last, until))
    return (first, last), raw


def read_profile(details: Mapping[str, Any]) -> tuple[TrainingProfile | None, str | None]:
    """The training profile recorded with a model, or why there is none."""
    stored = details.get("profile")
    if stored is None:
        return None, "the model's artifact carries no training profile (trained before profiles existed)"
    try:
        return TrainingProfile.from_dict(stored), None
    except (ValueError, TypeError) as exc:
        return None, f"the model's training profile is malformed: {exc}"


def live_section(figures: LiveFigures) -> dict[str, Any]:
    """MAE, RMSE and mean error (predicted - actual) of the predictions with an actual; null when none."""
    n = figures.count
    if n == 0:
        return {"count": 0, "mae": None, "rmse": None, "mean_error": None}
    rmse = math.sqrt(figures.squared_error / n)
    return {"count": n, "mae": figures.abs_error / n, "rmse": rmse, "mean_error": figures.error / n}


def drift_section(profile: TrainingProfile, counts: Counts, threshold: float) -> dict[str, Any]:
    """PSI of the window's bins against the training shares, per input field."""
    drift = {}
    for name, field in profile.fields.items():
        bins = counts.get(name, Counter())
        total = sum(bins.values())
        shares = [bins.get(i, 0) / total if total else 0.0 for i in range(len(field.shares))]
        value = psi(field.shares, shares)
        drift[name] = {"psi": value, "drifted": value >= threshold}
    return drift


class MonitoringService:
    """Records actual delays; reports a model's live accuracy and drift over a window of its history."""

    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock
        self.psi_threshold = DEFAULT_PSI_THRESHOLD
        self.grace = ROLLUP_GRACE

    def init_app(self, app: Flask) -> None:
        """Reads the drift threshold from the configuration."""
        self.psi_threshold = app.config["MONITORING_PSI_THRESHOLD"]

    def record_actuals(self, actuals: Sequence[Mapping[str, Any]]) -> int:
        """Records the actual delays of predictions, all or none; returns how many predictions have one.

        The same history id twice in one call: the later value is kept, as a later call would.
        """
        latest = {item["history_id"]: float(item["arr_delay"]) for item in actuals}
        with self.db.transaction() as session:
            found = queries.predictions_by_id(session, list(latest))
            refuse_unknown(actuals, found)
            now = self.clock()
            queries.upsert_actuals(session, [actual_row(found[i], delay, now) for i, delay in latest.items()])
        return len(latest)

    def report(
        self, model_version: str | None = None, since: datetime | None = None, until: datetime | None = None
    ) -> dict[str, Any]:
        """The monitoring report of a model (default: the active one) over [since, until) of its history."""
        version, details = self._version(model_version)
        profile, unavailable = read_profile(details)
        fields = list(profile.fields.values()) if profile else []
        rolled_until = self.roll_up(version, fields)
        window = (since, until)
        with self.db.transaction() as session:
            counts = window_counts(session, version, fields, window, rolled_until)
            live = queries.live_figures(session, version, window)
            side_by_side = split_versions(session, window, live_section, (version, live))
        predictions = counts[ALL_ROWS][0]
        if profile is not None and predictions == 0:
            profile, unavailable = None, "no predictions in the window"
        return {
            "model_version": version,
            "window": {"since": since, "until": until},
            "predictions": predictions,
            "live": live_section(live),
            "drift": drift_section(profile, counts, self.psi_threshold) if profile else None,
            "drift_unavailable": unavailable,
            "psi_threshold": self.psi_threshold,
            "versions": side_by_side,
        }

    def _version(self, model_version: str | None) -> tuple[str, dict[str, Any]]:
        """The version asked for (or the active one) and what was recorded of it."""
        with self.db.transaction() as session:
            version = model_version or queries.active_version(session)
            if version is None:
                raise ModelNotLoaded("No model was ever loaded: there is nothing to monitor.")
            details = queries.version_details(session, version)
        if details is None:
            raise UnknownModelVersion(f"No model of version {version} was ever loaded here.")
        return version, details

    def roll_up(self, version: str, fields: Sequence[FieldProfile]) -> datetime:
        """Counts a model's finished hours not yet rolled up; returns up to when its hours are counted.

        The counting reads outside the write transaction (on SQLite, predictions keep being written
        meanwhile); the short write then stores them only if no other process did first.
        """
        target = floor_hour(self.clock() - self.grace)
        with self.db.transaction() as session:
            seen = queries.rollup_mark(session, version)
        start = seen or ROLLUP_ORIGIN
        if start >= target:
            return start
        with self.db.transaction() as session:
            rows = list(queries.counted_bins(session, version, [None, *fields], (start, target), hourly=True))
        with self.db.transaction() as session:
            if not queries.advance_mark(session, version, seen, target):
                return queries.rollup_mark(session, version) or start
            if rows:
                # Core's executemany: the ORM's bulk insert would cost more than the counting.
                session.connection().execute(
                    insert(InputCount.__table__), [count_row(version, r) for r in rows]
                )
        return target


def window_counts(
    session: Any, version: str, fields: Sequence[FieldProfile], window: Range, rolled_until: datetime
) -> Counts:
    """Rows per bin of each field (and in all, under ALL_ROWS) over the window: rollups plus the rest."""
    counts: Counts = defaultdict(Counter)
    hours, raw = split_window(window, rolled_until)
    if hours is not None:
        for field, bin_index, rows in queries.rolled_bins(session, version, hours):
            counts[field][bin_index] += rows
    for part in raw:  # one range at a time, so that each reads the time index
        for _, field, bin_index, rows in queries.counted_bins(session, version, [None, *fields], part, False):
            counts[field][bin_index] += rows
    return counts


def count_row(version: str, row: tuple[str | None, str, int, int]) -> dict[str, Any]:
    """One monitoring_counts row from a counted (hour, field, bin, rows)."""
    hour, field, bin_index, rows = row
    return {
        "model_version": version,
        "hour": queries.parse_hour(hour),
        "field": field,
        "bin": bin_index,
        "rows": rows,
    }


def refuse_unknown(actuals: Sequence[Mapping[str, Any]], found: Mapping[int, Any]) -> None:
    """Refuses the whole call when any history id names no prediction, naming each such index."""
    unknown = {
        index: {"history_id": ["No prediction has this id."]}
        for index, item in enumerate(actuals)
        if item["history_id"] not in found
    }
    if unknown:
        raise UnknownPrediction(
            f"{len(unknown)} of the actuals name no recorded prediction; nothing was recorded.",
            {"actuals": unknown},
        )


def actual_row(prediction: Any, arr_delay: float, now: datetime) -> dict[str, Any]:
    """An actuals row: the prediction's version, time and predicted delay beside the actual one."""
    return {
        "history_id": prediction.id,
        "model_version": prediction.model_version,
        "predicted_at": prediction.created_at,
        "predicted": prediction.arr_delay,
        "arr_delay": arr_delay,
        "recorded_at": now,
    }

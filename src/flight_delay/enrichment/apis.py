"""Clients of AirportDB (airport coordinates) and Weatherbit (daily wind history)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import requests

from flight_delay.enrichment.http import ApiError, NotFound, get_json

AIRPORTDB_URL = "https://airportdb.io/api/v1"
WEATHERBIT_URL = "https://api.weatherbit.io/v2.0"


class AirportDbClient:
    """Looks up an airport's coordinates by its ICAO code, `K` + IATA for the contiguous US."""

    def __init__(self, token: str, base_url: str = AIRPORTDB_URL, **http: Any) -> None:
        self.token = token
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.http = http

    def coordinates(self, iata: str) -> tuple[float, float] | None:
        """Returns (latitude, longitude) of K+iata, or None when AirportDB has no such airport."""
        # Alaska, Hawaii and the territories (ANC, HNL, SJU, ...) have P/T codes: they come back
        # as not found, and their wind is reported as unavailable rather than guessed.
        try:
            body = get_json(
                self.session, f"{self.base_url}/airport/K{iata}", {"apiToken": self.token}, **self.http
            )
        except NotFound:
            return None
        return float(body["latitude_deg"]), float(body["longitude_deg"])


class WeatherbitClient:
    """Reads the daily mean wind speed (m/s) at a point from Weatherbit's history/daily."""

    def __init__(self, key: str, base_url: str = WEATHERBIT_URL, **http: Any) -> None:
        self.key = key
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.http = http

    def daily_wind(self, lat: float, lon: float, day: dt.date) -> float | None:
        """Returns wind_spd for the day (end_date is the next day, as the API wants), or None."""
        params = {
            "lat": lat,
            "lon": lon,
            "start_date": day.isoformat(),
            "end_date": (day + dt.timedelta(days=1)).isoformat(),
            "key": self.key,
        }
        body = get_json(self.session, f"{self.base_url}/history/daily", params, **self.http)
        if "error" in body:
            raise ApiError(f"weatherbit refused the request: {body['error']}")
        data = body.get("data") or []
        value = data[0].get("wind_spd") if data else None
        return None if value is None else float(value)

"""Clients of AirportDB (airport coordinates) and Weatherbit (daily wind history)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import requests

from flight_delay.enrichment.http import ApiError, NotFound, get_json

AIRPORTDB_URL = "https://airportdb.io/api/v1"
WEATHERBIT_URL = "https://api.weatherbit.io/v2.0"


class JsonApi:
    """One API's base URL, a pooled HTTP session and the retry/timeout options for get_json."""

    def __init__(self, secret: str, base_url: str, **http: Any) -> None:
        self.secret = secret
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.http = http

    def get(self, path: str, params: dict[str, Any]) -> Any:
        """GETs base_url + path as JSON with this client's retry options."""
        return get_json(self.session, f"{self.base_url}{path}", params, **self.http)


class AirportDbClient(JsonApi):
    """Looks up an airport's coordinates by its ICAO code, `K` + IATA for the contiguous US."""

    def __init__(self, token: str, base_url: str = AIRPORTDB_URL, **http: Any) -> None:
        super().__init__(token, base_url, **http)

    def coordinates(self, iata: str) -> tuple[float, float] | None:
        """Returns (latitude, longitude) of K+iata, or None when AirportDB has no such airport."""
        # Alaska, Hawaii and the territories (ANC, HNL, SJU, ...) have P/T codes: they come back
        # as not found, and their wind is reported as unavailable rather than guessed.
        try:
            body = self.get(f"/airport/K{iata}", {"apiToken": self.secret})
        except NotFound:
            return None
        return float(body["latitude_deg"]), float(body["longitude_deg"])


class WeatherbitClient(JsonApi):
    """Reads the daily mean wind speed (m/s) at a point from Weatherbit's history/daily."""

    def __init__(self, key: str, base_url: str = WEATHERBIT_URL, **http: Any) -> None:
        super().__init__(key, base_url, **http)

    def daily_wind(self, lat: float, lon: float, day: dt.date) -> float | None:
        """Returns wind_spd for the day (end_date is the next day, as the API wants), or None."""
        params = {
            "lat": lat,
            "lon": lon,
            "start_date": day.isoformat(),
            "end_date": (day + dt.timedelta(days=1)).isoformat(),
            "key": self.secret,
        }
        body = self.get("/history/daily", params)
        if "error" in body:
            raise ApiError(f"weatherbit refused the request: {body['error']}")
        data = body.get("data") or []
        value = data[0].get("wind_spd") if data else None
        return None if value is None else float(value)

"""AirportDB and Weatherbit clients against a local HTTP server speaking the APIs' real shapes."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from flight_delay.enrichment.apis import AirportDbClient, WeatherbitClient
from flight_delay.enrichment.cache import DiskCache
from flight_delay.enrichment.http import ApiError
from flight_delay.enrichment.sources import (
    ApiWindSource,
    OfflineWindSource,
    TooManyLookups,
    wind_source_from_env,
)

AIRPORTS = {
    "KJFK": {"ident": "KJFK", "type": "large_airport", "name": "John F Kennedy International Airport",
             "latitude_deg": 40.639447, "longitude_deg": -73.779317, "iata_code": "JFK"},
    "KSEA": {"ident": "KSEA", "type": "large_airport", "name": "Seattle Tacoma International Airport",
             "latitude_deg": 47.449, "longitude_deg": -122.309, "iata_code": "SEA"},
}  # fmt: skip


class FakeApis:
    """Holds what the fake server answers and records every request it received."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.scripted: list[tuple[int, dict[str, str], object, float]] = []  # served first, in order

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, str], object, float]:
        """Returns (status, headers, body, delay) for a request."""
        if self.scripted:
            return self.scripted.pop(0)
        if path.startswith("/airportdb/airport/"):
            ident = path.rsplit("/", 1)[1]
            if ident in AIRPORTS:
                return 200, {}, AIRPORTS[ident], 0
            return 404, {}, {"message": "Airport not found"}, 0
        if path == "/weatherbit/history/daily":
            if query.get("key") != "good-key":
                return 403, {}, {"error": "API key not valid, or not yet activated."}, 0
            wind = round(float(query["lat"]) / 10, 2)  # a value the test can predict
            day = {"datetime": query["start_date"], "wind_spd": wind, "max_wind_spd": wind * 2}
            body = {"data": [day], "city_name": "Somewhere", "lat": query["lat"], "lon": query["lon"],
                    "timezone": "America/New_York", "sources": ["imerg", "merra2"]}  # fmt: skip
            return 200, {}, body, 0
        return 404, {}, {"error": "no route"}, 0


@pytest.fixture
def apis() -> Iterator[tuple[FakeApis, str]]:
    """Runs the fake APIs on a free loopback port; yields them and their base URL."""
    fake = FakeApis()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
            fake.requests.append((parsed.path, query))
            status, headers, body, delay = fake.answer(parsed.path, query)
            time.sleep(delay)
            payload = json.dumps(body).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            """Keeps the test output quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def clients(base: str, key: str = "good-key", **http: object) -> tuple[AirportDbClient, WeatherbitClient]:
    """Builds both clients against the fake server, with sleeps recorded instead of slept."""
    options = {"sleep": lambda s: None, "timeout_s": 2.0, **http}
    return (
        AirportDbClient("secret-token", f"{base}/airportdb", **options),
        WeatherbitClient(key, f"{base}/weatherbit", **options),
    )


def test_coordinates_and_daily_wind_use_the_documented_queries(apis: tuple[FakeApis, str]) -> None:
    fake, base = apis
    airportdb, weatherbit = clients(base)

    lat, lon = airportdb.coordinates("JFK")
    wind = weatherbit.daily_wind(lat, lon, dt.date(2013, 12, 31))

    assert (lat, lon) == (40.639447, -73.779317)
    assert wind == pytest.approx(4.06)
    assert fake.requests[0] == ("/airportdb/airport/KJFK", {"apiToken": "secret-token"})
    path, query = fake.requests[1]
    assert path == "/weatherbit/history/daily"
    assert query == {"lat": "40.639447", "lon": "-73.779317", "start_date": "2013-12-31",
                     "end_date": "2014-01-01", "key": "good-key"}  # fmt: skip


def test_unknown_airport_is_none_not_an_error(apis: tuple[FakeApis, str]) -> None:
    _, base = apis
    airportdb, _ = clients(base)

    assert airportdb.coordinates("HNL") is None


def test_bad_key_fails_at_once_without_leaking_it(apis: tuple[FakeApis, str]) -> None:
    fake, base = apis
    _, weatherbit = clients(base, key="wrong-key")

    with pytest.raises(ApiError) as raised:
        weatherbit.daily_wind(40.6, -73.7, dt.date(2013, 1, 1))

    assert raised.value.status == 403
    assert "wrong-key" not in str(raised.value)
    assert "key=%2A%2A%2A" in str(raised.value)
    assert len(fake.requests) == 1


def test_rate_limit_and_server_errors_are_retried_with_backoff(apis: tuple[FakeApis, str]) -> None:
    fake, base = apis
    waits: list[float] = []
    _, weatherbit = clients(base, sleep=waits.append, backoff_s=0.5)
    fake.scripted = [
        (429, {"Retry-After": "7"}, {"status_message": "Your request count is over the limit."}, 0),
        (500, {}, {"error": "internal"}, 0),
    ]

    wind = weatherbit.daily_wind(47.449, -122.309, dt.date(2013, 6, 1))

    assert wind == pytest.approx(4.74)
    assert waits == [7.0, 1.0]  # Retry-After first, then backoff 0.5 * 2**1
    assert len(fake.requests) == 3


def test_persistent_server_errors_give_up(apis: tuple[FakeApis, str]) -> None:
    fake, base = apis
    _, weatherbit = clients(base, attempts=3)
    fake.scripted = [(503, {}, {"error": "down"}, 0)] * 3

    with pytest.raises(ApiError, match="gave up .* after 3 attempts .*status 503"):
        weatherbit.daily_wind(40.6, -73.7, dt.date(2013, 1, 1))
    assert len(fake.requests) == 3


def test_a_slow_answer_times_out_and_is_retried(apis: tuple[FakeApis, str]) -> None:
    fake, base = apis
    _, weatherbit = clients(base, timeout_s=0.2, attempts=2)
    fake.scripted = [(200, {}, {"data": []}, 1.0)]

    assert weatherbit.daily_wind(40.6, -73.7, dt.date(2013, 1, 1)) == pytest.approx(4.06)
    assert len(fake.requests) == 2


def test_cache_fetches_each_airport_day_once(apis: tuple[FakeApis, str], tmp_path: Path) -> None:
    fake, base = apis
    pairs = [("JFK", dt.date(2013, 1, 1)), ("JFK", dt.date(2013, 1, 2)), ("HNL", dt.date(2013, 1, 1))]

    first = ApiWindSource(*clients(base), DiskCache(tmp_path)).winds(pairs + pairs)
    sent = len(fake.requests)
    second = ApiWindSource(*clients(base), DiskCache(tmp_path)).winds(pairs)

    assert sent == 4  # JFK and HNL coordinates once each, two JFK days
    assert len(fake.requests) == sent
    assert first == second
    assert [(o.airport, o.wind_spd, o.source) for o in first] == [
        ("HNL", None, "airportdb has no KHNL"),
        ("JFK", pytest.approx(4.06), "weatherbit"),
        ("JFK", pytest.approx(4.06), "weatherbit"),
    ]


def test_paid_source_refuses_more_new_days_than_its_limit(apis: tuple[FakeApis, str], tmp_path: Path) -> None:
    fake, base = apis
    days = [("JFK", dt.date(2013, 1, d)) for d in (1, 2, 3)]

    with pytest.raises(TooManyLookups, match="3 airport-days are not cached .* limit is 2"):
        ApiWindSource(*clients(base), DiskCache(tmp_path), max_new_days=2).winds(days)
    assert fake.requests == []  # refused before the first request

    ApiWindSource(*clients(base), DiskCache(tmp_path), max_new_days=2).winds(days[:2])
    # Days already cached cost nothing and do not count: one new day is within the limit.
    third = ApiWindSource(*clients(base), DiskCache(tmp_path), max_new_days=1).winds(days)
    assert [o.wind_spd for o in third] == [pytest.approx(4.06)] * 3


def test_source_from_env_needs_both_keys(apis: tuple[FakeApis, str], tmp_path: Path) -> None:
    _, base = apis
    env = {
        "AIRPORTDB_API_TOKEN": "t",
        "WEATHERBIT_API_KEY": "k",
        "AIRPORTDB_BASE_URL": f"{base}/airportdb",
        "WEATHERBIT_BASE_URL": f"{base}/weatherbit",
        "WIND_CACHE_DIR": str(tmp_path),
    }

    assert isinstance(wind_source_from_env(env), ApiWindSource)
    assert wind_source_from_env(env).max_new_days == 50
    assert wind_source_from_env({**env, "WIND_MAX_NEW_DAYS": "400"}).max_new_days == 400
    assert isinstance(wind_source_from_env({"WEATHERBIT_API_KEY": "k"}), OfflineWindSource)

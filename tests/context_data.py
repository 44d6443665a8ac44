"""Synthetic flights and weather around a daylight-saving change, with questions to ask of them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from flight_delay.context.definitions import DEFAULT_LEAD_S, flight_facts

ORIGINS = ("EWR", "JFK", "LGA")
FIRST_DAY = date(2013, 3, 9)  # and the two days after: 2013-03-10 springs forward
DAYS = 3


def synthetic_flights(rng: np.random.Generator, count: int) -> list[dict[str, Any]]:
    """Flights over DAYS days, few aircraft (so previous legs exist), some late, cancelled or diverted."""
    flights = []
    for number in range(count):
        day = FIRST_DAY + timedelta(days=int(rng.integers(0, DAYS)))
        sched = int(rng.integers(5, 24)) * 100 + int(rng.choice([0, 15, 30, 45, 59]))
        cancelled, diverted = rng.random() < 0.08, rng.random() < 0.03
        dep_delay = None if cancelled else float(np.round(rng.gamma(1.2, 25) - 12))
        air_time = None if cancelled or diverted else float(rng.integers(40, 300))
        flights.append(
            {
                "year": day.year, "month": day.month, "day": day.day, "sched_dep_time": sched,
                "sched_arr_time": (sched + 300) % 2400, "carrier": str(rng.choice(["UA", "AA", "DL"])),
                "flight": number, "origin": str(rng.choice(ORIGINS)), "dest": "ORD",
                "tailnum": f"N{int(rng.integers(1, 25))}" if rng.random() > 0.05 else None,
                "dep_delay": dep_delay, "air_time": air_time, "distance": 700.0,
                "arr_delay": None if air_time is None else float(dep_delay + rng.normal(0, 10)),
            }
        )  # fmt: skip
    return flights


def synthetic_weather(rng: np.random.Generator) -> list[dict[str, Any]]:
    """Hourly observations at each origin over the days, a few hours missing."""
    start = datetime(FIRST_DAY.year, FIRST_DAY.month, FIRST_DAY.day, tzinfo=UTC)
    return [
        {"origin": origin, "time_hour": (start + timedelta(hours=h)).isoformat(),
         "temp": float(rng.normal(40, 8)), "wind_speed": float(rng.gamma(2, 5)),
         "precip": float(rng.random() < 0.1), "visib": 10.0}
        for origin in ORIGINS
        for h in range(24 * DAYS + 6)
        if rng.random() > 0.05
    ]  # fmt: skip


def synthetic_context(seed: int, count: int = 400) -> tuple[list[dict], list[dict], list[tuple[dict, int]]]:
    """Flights, weather, and questions (a flight and an as_of): before departure, at it, at odd times."""
    rng = np.random.default_rng(seed)
    flights, weather = synthetic_flights(rng, count), synthetic_weather(rng)
    questions = []
    for flight in flights[::7]:
        facts = flight_facts(flight)
        questions.append((flight, facts.scheduled - DEFAULT_LEAD_S))
        if facts.departed is not None:
            questions.append((flight, facts.departed))
        questions.append((flight, facts.scheduled + int(rng.integers(-20_000, 20_000))))
    return flights, weather, questions

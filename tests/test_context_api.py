"""POST /flights/ and /weather/, and predictions that read what was posted as of their prediction time."""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from flight_delay.api.services import services_of
from flight_delay.context.definitions import CONTEXT_FEATURES, flight_facts, observation
from flight_delay.context.index import ContextIndex
from flight_delay.context.serving import NOTHING_POSTED
from flight_delay.context.tables import PostedFlight, WeatherObservation
from flight_delay.feed import known_by
from tests.context_data import synthetic_context
from tests.factories import ADMIN_HEADERS

ASKED = ("year", "month", "day", "sched_dep_time", "sched_arr_time", "dep_delay", "distance", "carrier")
ASKED += ("origin", "dest", "tailnum", "flight")


def post(client: FlaskClient, path: str, key: str, items: list[dict[str, Any]], **headers: str) -> Any:
    """Posts flights or observations with the admin token (unless headers are given)."""
    return client.post(path, json={key: items}, headers=headers or ADMIN_HEADERS)


def rows(client: FlaskClient, table: type[Any]) -> int:
    """How many rows a context table holds."""
    with services_of(client.application).db.transaction() as session:
        return session.execute(select(func.count()).select_from(table)).scalar_one()


def iso(seconds: int) -> str:
    """Epoch seconds as ISO 8601 with an offset."""
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def asked(flight: dict[str, Any], when: int | str | None, **changes: Any) -> dict[str, Any]:
    """A prediction request for a posted flight, as of a time (epoch seconds, ISO 8601 as sent, or none)."""
    as_of = iso(when) if isinstance(when, int) else when
    return {**{name: flight.get(name) for name in ASKED}, "as_of": as_of, **changes}


@pytest.fixture
def app_config(app_config: dict[str, Any]) -> dict[str, Any]:
    """Keeps every posted day (the data spans three), and reads posts at once."""
    return {**app_config, "CONTEXT_RETENTION_H": 24 * 30, "CONTEXT_REFRESH_MS": 0}


@pytest.fixture
def posted(loaded_client: FlaskClient) -> tuple[list[dict], list[dict], list[tuple[dict, int]]]:
    """Synthetic flights and weather posted whole, with the questions to ask of them."""
    flights, weather, questions = synthetic_context(0)
    assert post(loaded_client, "/flights/", "flights", flights).get_json() == {"recorded": len(flights)}
    assert post(loaded_client, "/weather/", "observations", weather).get_json() == {"recorded": len(weather)}
    return flights, weather, questions


def test_a_repost_replaces_the_flight(loaded_client: FlaskClient) -> None:
    flights, _, _ = synthetic_context(1, count=3)
    scheduled = [{**f, "dep_delay": None, "arr_delay": None, "air_time": None} for f in flights]
    assert post(loaded_client, "/flights/", "flights", scheduled).status_code == 200

    again = post(loaded_client, "/flights/", "flights", [flights[0], {**flights[0], "tailnum": "N999"}])

    assert again.get_json() == {"recorded": 1}  # the same key twice in one post: the later wins
    assert rows(loaded_client, PostedFlight) == 3
    with services_of(loaded_client.application).db.transaction() as session:
        kept = session.execute(
            select(PostedFlight).where(PostedFlight.flight == flights[0]["flight"])
        ).scalar_one()
    assert (kept.tailnum, kept.dep_delay) == ("N999", flights[0]["dep_delay"])


@pytest.mark.parametrize(
    ("path", "key", "bad", "field"),
    [
        ("/flights/", "flights", {"month": 13}, "month"),
        ("/flights/", "flights", {"day": 30, "month": 2}, "day"),
        ("/flights/", "flights", {"carrier": None}, "carrier"),
        ("/flights/", "flights", {"arr_delay": 5.0, "air_time": None}, "arr_delay"),
        ("/flights/", "flights", {"year": 2099, "dep_delay": 3.0, "arr_delay": None}, "dep_delay"),  # future
        ("/weather/", "observations", {"wind_speed": 1048.36}, "wind_speed"),
        ("/weather/", "observations", {"time_hour": "2013-03-09T06:30:00Z"}, "time_hour"),
        ("/weather/", "observations", {"time_hour": "2013-03-09T06:00:00"}, "time_hour"),  # no offset
        ("/weather/", "observations", {"time_hour": "2099-01-01T00:00:00Z"}, "time_hour"),  # not over
        ("/weather/", "observations", {"hour": 7}, "hour"),  # 06:00Z is 01:00 in New York
        ("/weather/", "observations", {"time_hour": "0001-01-01T00:00:00Z"}, "time_hour"),  # year 0 there
    ],
)
def test_a_bad_record_refuses_the_post_naming_index_and_field_and_keeps_nothing(
    loaded_client: FlaskClient, path: str, key: str, bad: dict[str, Any], field: str
) -> None:
    flights, weather, _ = synthetic_context(1, count=3)
    good = flights[0] if key == "flights" else {**weather[0], "time_hour": "2013-03-09T06:00:00Z"}

    response = post(loaded_client, path, key, [good, {**good, **bad}])

    assert response.status_code == 422
    assert list(response.get_json()["errors"][key]["1"]) == [field]
    assert rows(loaded_client, PostedFlight) == rows(loaded_client, WeatherObservation) == 0


def test_posting_needs_the_admin_token(loaded_client: FlaskClient) -> None:
    flights, weather, _ = synthetic_context(1, count=1)

    assert (
        post(loaded_client, "/flights/", "flights", flights, Authorization="Bearer wrong").status_code == 401
    )
    assert loaded_client.post("/weather/", json={"observations": weather}).status_code == 401
    assert rows(loaded_client, PostedFlight) == rows(loaded_client, WeatherObservation) == 0


def test_a_prediction_reads_the_context_known_at_its_as_of(
    loaded_client: FlaskClient, posted: tuple, model_files: Callable[[int], Path]
) -> None:
    flights, weather, questions = posted
    index = ContextIndex.of(map(flight_facts, flights), map(observation, weather))
    model = pickle.loads(model_files(0).read_bytes())
    batch = [asked(flight, as_of) for flight, as_of in questions]

    answers = loaded_client.post("/model/predict/", json={"flights": batch}).get_json()["predictions"]

    for request, (flight, as_of), answer in zip(batch, questions, answers, strict=True):
        expected = index.context(flight, as_of)
        context = answer["context"]
        assert context["used"] is True
        assert context["as_of"] == request["as_of"]
        features = [math.nan if v is None else v for v in context["features"].values()]
        assert features == pytest.approx(list(expected.features), nan_ok=True)
        with_context = {**request, **dict(zip(CONTEXT_FEATURES, expected.features, strict=True))}
        assert answer["arr_delay"] == pytest.approx(model.predict([with_context])[0], abs=1e-9)
    used = [a["context"] for a in answers]
    assert any(c["previous_leg"] and c["previous_leg"]["state"] == "landed" for c in used)
    assert any(c["weather"] for c in used)


def test_drift_compares_the_context_features_over_the_flights_scored_with_context(
    loaded_client: FlaskClient, posted: tuple
) -> None:
    _, _, questions = posted
    batch = [asked(flight, as_of) for flight, as_of in questions]
    nothing = [asked(flight, as_of, origin="BOS") for flight, as_of in questions]  # no context there
    for flights in (batch, nothing):
        assert loaded_client.post("/model/predict/", json={"flights": flights}).status_code == 200

    body = loaded_client.get("/model/monitoring/").get_json()

    assert body["drift_unavailable"] is None
    assert set(CONTEXT_FEATURES) <= set(body["drift"])
    assert body["predictions"] == 2 * len(batch)


def test_without_context_the_answer_says_why_and_the_boosters_without_context_answer(
    loaded_client: FlaskClient, model_files: Callable[[int], Path]
) -> None:
    flights, _, questions = synthetic_context(2)
    flight, as_of = questions[0]
    model = pickle.loads(model_files(0).read_bytes())

    nothing = loaded_client.post("/model/predict/", json=asked(flight, as_of)).get_json()["predictions"][0]
    post(loaded_client, "/flights/", "flights", flights)
    elsewhere = loaded_client.post("/model/predict/", json=asked(flight, as_of, origin="BOS")).get_json()

    assert nothing["context"] == {"used": False, "as_of": iso(as_of), "reason": NOTHING_POSTED}
    assert nothing["arr_delay"] == pytest.approx(model.predict([asked(flight, as_of)])[0], abs=1e-9)
    assert elsewhere["predictions"][0]["context"]["reason"].startswith("no flight from BOS on 2013-03-")


def test_without_as_of_the_prediction_time_is_the_request_time(
    loaded_client: FlaskClient, posted: tuple
) -> None:
    flight, _ = posted[2][0]

    answer = loaded_client.post("/model/predict/", json=asked(flight, None)).get_json()["predictions"][0]
    item = loaded_client.get("/model/history/?page_size=1").get_json()["items"][0]

    assert (
        answer["context"]["as_of"]
        == datetime.fromisoformat(item["created_at"]).replace(microsecond=0).isoformat()
    )


def test_an_as_of_without_an_offset_is_refused_naming_it(loaded_client: FlaskClient) -> None:
    flights, _, _ = synthetic_context(2, count=1)

    response = loaded_client.post("/model/predict/", json=asked(flights[0], "2013-03-09T08:00:00"))

    assert response.status_code == 422
    assert list(response.get_json()["errors"]) == ["as_of"]


def test_as_of_is_recorded_with_the_flight_as_sent(loaded_client: FlaskClient) -> None:
    flights, _, _ = synthetic_context(2, count=1)
    sent = asked(flights[0], "2013-03-09T03:00:00-05:00")

    loaded_client.post("/model/predict/", json=sent)

    assert loaded_client.get("/model/history/?page_size=1").get_json()["items"][0]["input"] == sent


@pytest.mark.parametrize("question", [10, 21, 40])
def test_a_prediction_is_the_same_from_what_was_known_at_its_as_of_or_from_everything(
    loaded_client: FlaskClient, question: int
) -> None:
    flights, weather, questions = synthetic_context(3)
    flight, as_of = questions[question]
    known = [known_by(f, flight_facts(f), as_of) for f in flights]
    hours = [o for o in weather if observation(o).known < as_of]
    post(loaded_client, "/flights/", "flights", known)
    post(loaded_client, "/weather/", "observations", hours)
    first = loaded_client.post("/model/predict/", json=asked(flight, as_of)).get_json()["predictions"][0]
    post(loaded_client, "/flights/", "flights", flights)  # everything that happened, later too
    post(loaded_client, "/weather/", "observations", weather)
    then = loaded_client.post("/model/predict/", json=asked(flight, as_of)).get_json()["predictions"][0]

    assert first["context"]["used"] is True
    assert any(
        f["dep_delay"] is None and g["dep_delay"] is not None for f, g in zip(known, flights, strict=True)
    )
    assert (then["arr_delay"], then["context"]) == (first["arr_delay"], first["context"])


def test_an_as_of_utc_can_express_is_answered_even_at_the_edge_of_the_calendar(
    loaded_client: FlaskClient, posted: tuple
) -> None:
    flight, _ = posted[2][0]

    answer = loaded_client.post("/model/predict/", json=asked(flight, "0001-01-01T00:00:00Z"))
    refused = loaded_client.post("/model/predict/", json=asked(flight, "0001-01-01T00:00:00+01:00"))

    context = answer.get_json()["predictions"][0]["context"]
    assert (context["used"], context["as_of"]) == (False, "0001-01-01T00:00:00+00:00")
    assert context["reason"].startswith("reads records older than those kept")
    assert refused.status_code == 422
    assert list(refused.get_json()["errors"]) == ["as_of"]

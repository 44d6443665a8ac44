"""Named tokens of each role: the lists read, the caller found from the header, the token never said."""

from __future__ import annotations

import hmac
import logging
from typing import Any

import pytest
from flask.testing import FlaskClient

from flight_delay.access import Need, Policy
from flight_delay.api import create_app
from flight_delay.errors import AdminTokenRequired, Unauthorized, UnsafeConfiguration
from flight_delay.tokens import ANONYMOUS, Caller, TokenBook

# Test fixtures, not secrets.
ALICE_TOKEN = "alice-secret-0123456789"  # noqa: S105
BOB_TOKEN = "bob-secret-0123456789ab"  # noqa: S105
SINGLE_TOKEN = "single-token-0123456789"  # noqa: S105


def book(**config: Any) -> TokenBook:
    """The tokens of a configuration."""
    return TokenBook.from_config(config)


def test_the_single_token_is_named_admin_beside_the_named_ones() -> None:
    tokens = book(
        ML_API_ADMIN_TOKEN=SINGLE_TOKEN,
        ML_API_ADMIN_TOKENS=f"alice:{ALICE_TOKEN}, bob:{BOB_TOKEN}",
    )

    assert tokens.identify(f"Bearer {SINGLE_TOKEN}") == Caller("admin", "admin")
    assert tokens.identify(f"Bearer {ALICE_TOKEN}") == Caller("alice", "admin")
    assert tokens.identify(f"bearer   {BOB_TOKEN} ") == Caller("bob", "admin")
    assert tokens.identify("Bearer alice") is None
    assert tokens.identify(f"Basic {ALICE_TOKEN}") is None
    assert tokens.identify("") is None


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        ("alice", "entry 1 must be name:token"),
        (f"alice:{ALICE_TOKEN},:x", "entry 2 must be name:token"),
        (f"al ice:{ALICE_TOKEN}", "entry 1"),
        (f"alice:{ALICE_TOKEN},alice:{BOB_TOKEN}", "'alice' is given twice"),
        (f"alice:{ALICE_TOKEN},bob:{ALICE_TOKEN}", "the same token is given under two names"),
    ],
)
def test_a_bad_list_is_refused_naming_the_entry_never_the_token(raw: str, said: str) -> None:
    with pytest.raises(ValueError, match=said) as refused:
        book(ML_API_ADMIN_TOKENS=raw)

    assert ALICE_TOKEN not in str(refused.value)
    assert BOB_TOKEN not in str(refused.value)


def test_admin_twice_is_refused() -> None:
    with pytest.raises(
        ValueError, match=r"'admin' is given twice \(ML_API_ADMIN_TOKEN and ML_API_ADMIN_TOKENS\)"
    ):
        book(ML_API_ADMIN_TOKEN=SINGLE_TOKEN, ML_API_ADMIN_TOKENS=f"admin:{ALICE_TOKEN}")


def test_a_token_repr_never_shows_the_secret() -> None:
    assert ALICE_TOKEN not in repr(book(ML_API_ADMIN_TOKENS=f"alice:{ALICE_TOKEN}"))


ROLLING_BACK = Need("admin", "Rolling back")


def test_the_caller_from_the_header_alone() -> None:
    policy = Policy(book(ML_API_ADMIN_TOKENS=f"alice:{ALICE_TOKEN}"), "production")

    assert policy.check(ROLLING_BACK, f"Bearer {ALICE_TOKEN}") == Caller("alice", "admin")
    with pytest.raises(Unauthorized, match="Rolling back needs an admin token"):
        policy.check(ROLLING_BACK, "")
    with pytest.raises(Unauthorized, match="wrong") as wrong:
        policy.check(ROLLING_BACK, "Bearer guessed-token-000000")
    assert "guessed" not in wrong.value.message


def test_without_tokens_production_refuses_and_development_is_open() -> None:
    with pytest.raises(AdminTokenRequired):
        Policy(book(), "production").check(ROLLING_BACK, "")
    assert Policy(book(), "development").check(ROLLING_BACK, "") == ANONYMOUS


def test_production_refuses_to_start_with_a_short_named_token(app_config: dict[str, Any]) -> None:
    config = {**app_config, "ENV": "production", "ML_API_ADMIN_TOKEN": None}

    with pytest.raises(UnsafeConfiguration, match="ML_API_ADMIN_TOKENS"):
        create_app({**config, "ML_API_ADMIN_TOKENS": f"alice:{ALICE_TOKEN},bob:short"})
    assert create_app({**config, "ML_API_ADMIN_TOKENS": f"alice:{ALICE_TOKEN}"}) is not None


def test_a_bad_list_refuses_to_start_without_saying_the_token(app_config: dict[str, Any]) -> None:
    with pytest.raises(UnsafeConfiguration) as refused:
        create_app({**app_config, "ML_API_ADMIN_TOKENS": f"alice:{ALICE_TOKEN},alice:{BOB_TOKEN}"})

    assert BOB_TOKEN not in str(refused.value)


def test_named_tokens_alone_guard_uploads_and_are_never_logged(
    app_config: dict[str, Any], caplog: pytest.LogCaptureFixture, model_files: Any
) -> None:
    client: FlaskClient = create_app(
        {**app_config, "ML_API_ADMIN_TOKEN": None, "ML_API_ADMIN_TOKENS": f"alice:{ALICE_TOKEN}"}
    ).test_client()
    caplog.set_level(logging.DEBUG)
    with model_files(0).open("rb") as handle:
        refused = client.post(
            "/model/load/", data={"file": (handle, "m.pkl")}, headers={"Authorization": "Bearer x"}
        )
    with model_files(0).open("rb") as handle:
        headers = {"Authorization": f"Bearer {ALICE_TOKEN}"}
        accepted = client.post("/model/load/", data={"file": (handle, "m.pkl")}, headers=headers)

    assert refused.status_code == 401
    assert accepted.status_code == 201, accepted.get_json()
    assert client.get("/model/audit/").get_json()["events"][0]["by"] == "alice"
    assert ALICE_TOKEN not in caplog.text
    history = client.get("/model/history/").get_data(as_text=True)
    assert ALICE_TOKEN not in history + client.get("/model/audit/").get_data(as_text=True)


def test_every_token_is_compared_in_constant_time_whichever_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = book(
        ML_API_ADMIN_TOKEN=SINGLE_TOKEN, ML_API_READER_TOKENS=f"alice:{ALICE_TOKEN},bob:{BOB_TOKEN}"
    )
    compared: list[bytes] = []
    constant_time = hmac.compare_digest

    def counted(presented: bytes, secret: bytes) -> bool:
        compared.append(secret)
        return constant_time(presented, secret)

    monkeypatch.setattr("flight_delay.tokens.hmac.compare_digest", counted)
    assert tokens.identify(f"Bearer {SINGLE_TOKEN}") == Caller("admin", "admin")  # the first matches
    assert tokens.identify("Bearer nobody-has-this-token") is None

    secrets = [SINGLE_TOKEN.encode(), ALICE_TOKEN.encode(), BOB_TOKEN.encode()]
    assert compared == secrets + secrets

"""Named bearer tokens: who a request's Authorization header says the caller is, and with which role.

Each role's tokens are a `name:token,...` list: `ML_API_ADMIN_TOKENS` (admin: everything),
`ML_API_READER_TOKENS` (reader: the history, monitoring, the models' records, the page's data) and
`ML_API_PREDICT_TOKENS` (predict: the prediction routes, when ML_API_PREDICT_NEEDS_TOKEN is set); the
single `ML_API_ADMIN_TOKEN` keeps working as the admin token named `admin`. A request carrying one of
them is that name (the audit's `by`); the tokens themselves are compared in constant time, against
every token whichever matches, and never logged, recorded or repeated in an error. A name, or a
token, given twice (in one list or across roles) refuses to start: which would it be?

Nothing here knows Flask, ASGI or routes: flight_delay/access.py says which role a route needs and
checks a request's header against this book.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ADMIN = "admin"
READER = "reader"
PREDICT = "predict"
# What a token of each role may do: admin implies reader and predict; reader and predict are apart.
GRANTS = {
    ADMIN: frozenset({ADMIN, READER, PREDICT}),
    READER: frozenset({READER}),
    PREDICT: frozenset({PREDICT}),
}
# Where each role's named tokens are configured.
SETTINGS = {
    ADMIN: "ML_API_ADMIN_TOKENS",
    READER: "ML_API_READER_TOKENS",
    PREDICT: "ML_API_PREDICT_TOKENS",
}
SINGLE_TOKEN_NAME = "admin"  # noqa: S105 - the name ML_API_ADMIN_TOKEN's token goes by, not a token
SINGLE_TOKEN_SETTING = "ML_API_ADMIN_TOKEN"  # noqa: S105 - a setting's name, not a token
NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True)
class Caller:
    """Who made a request: the token's name and its role."""

    name: str
    role: str

    def may(self, role: str) -> bool:
        """Whether this caller's role grants `role` (an admin may read and predict)."""
        return role in GRANTS[self.role]


ANONYMOUS = Caller("anonymous", ADMIN)  # no token configured for the role, in development: open


@dataclass(frozen=True)
class NamedToken:
    """One configured token: its name, its secret (never shown), its role and the setting naming it."""

    name: str
    secret: bytes = field(repr=False)
    role: str = ADMIN
    setting: str = SETTINGS[ADMIN]


@dataclass(frozen=True)
class TokenBook:
    """The configured tokens of every role, looked up by the bearer token a request carries."""

    tokens: tuple[NamedToken, ...] = ()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TokenBook:
        """The tokens of ML_API_ADMIN_TOKEN (as `admin`) and of each role's list; refuses a bad list."""
        named = [
            token
            for role, setting in SETTINGS.items()
            for token in parse_named_tokens(config.get(setting) or "", role, setting)
        ]
        single = config.get(SINGLE_TOKEN_SETTING)
        if single:
            named.insert(0, NamedToken(SINGLE_TOKEN_NAME, single.encode(), ADMIN, SINGLE_TOKEN_SETTING))
        refuse_duplicates(named)
        return cls(tuple(named))

    def configured(self) -> bool:
        """Whether any token is configured."""
        return bool(self.tokens)

    def grants(self, role: str) -> bool:
        """Whether any configured token may act as `role` (its own, or admin's)."""
        return any(role in GRANTS[token.role] for token in self.tokens)

    def short(self) -> list[NamedToken]:
        """The tokens shorter than MIN_TOKEN_LENGTH (guessable), for the start-up policy."""
        return [token for token in self.tokens if len(token.secret) < MIN_TOKEN_LENGTH]

    def count(self, role: str) -> int:
        """How many tokens have this role."""
        return sum(1 for token in self.tokens if token.role == role)

    def identify(self, authorization: str) -> Caller | None:
        """The caller whose token the header carries (`Bearer <token>`); None if it carries none of them.

        Every token is compared, in constant time, whether or not an earlier one matched.
        """
        presented = bearer_token(authorization)
        if presented is None:
            return None
        found = None
        for token in self.tokens:
            if hmac.compare_digest(presented, token.secret) and found is None:
                found = Caller(token.name, token.role)
        return found


def bearer_token(authorization: str) -> bytes | None:
    """The token of an `Authorization: Bearer <token>` header; None for another scheme or none."""
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return None
    return given.strip().encode()


def parse_named_tokens(raw: str, role: str = ADMIN, setting: str = SETTINGS[ADMIN]) -> list[NamedToken]:
    """Reads `name:token,...`; an error names the setting and the entry by position, never its token."""
    tokens = []
    for position, entry in enumerate(part.strip() for part in raw.split(",") if part.strip()):
        name, colon, secret = entry.partition(":")
        if not colon or not NAME.fullmatch(name.strip()) or not secret.strip():
            raise ValueError(
                f"{setting} entry {position + 1} must be name:token, the name 1 to 64 letters, "
                "digits or . _ @ -"
            )
        tokens.append(NamedToken(name.strip(), secret.strip().encode(), role, setting))
    return tokens


def refuse_duplicates(tokens: list[NamedToken]) -> None:
    """Refuses two tokens of one name, or one token under two names, in any roles (which would it be?)."""
    for token in tokens:
        settings = [other.setting for other in tokens if other.name == token.name]
        if len(settings) > 1:
            where = " and ".join(dict.fromkeys(settings))
            raise ValueError(f"token name {token.name!r} is given twice ({where})")
    secrets = [token.secret for token in tokens]
    if len(set(secrets)) != len(secrets):
        raise ValueError("the same token is given under two names")

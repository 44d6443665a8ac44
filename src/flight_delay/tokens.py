"""Named bearer tokens: who a request's Authorization header says the caller is, and with which role.

`ML_API_ADMIN_TOKENS=name:token,...` names each admin token; the single `ML_API_ADMIN_TOKEN` keeps
working as the token named `admin`. A request carrying one of them is that name (the audit's `by`);
the tokens themselves are compared in constant time, against every token whichever matches, and never
logged, recorded or repeated in an error.

Nothing here knows Flask or ASGI: `caller_for` takes the header's value, so Flask's views
(api/auth.py) and a gate in the ASGI middleware decide alike. Every token's role is `admin` for now;
the role travels with the caller so that other roles (reader, predict) need no other lookup.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flight_delay.errors import AdminTokenRequired, Unauthorized

ADMIN = "admin"
SINGLE_TOKEN_NAME = "admin"  # noqa: S105 - the name ML_API_ADMIN_TOKEN's token goes by, not a token
NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MIN_TOKEN_LENGTH = 16
OPEN_ENVIRONMENT = "development"  # the one environment where no token configured leaves admin writes open


@dataclass(frozen=True)
class Caller:
    """Who made a request: the token's name and its role."""

    name: str
    role: str


ANONYMOUS = Caller("anonymous", ADMIN)  # no token configured, outside production: open


@dataclass(frozen=True)
class NamedToken:
    """One configured token: its name, its secret (never shown) and its role."""

    name: str
    secret: bytes = field(repr=False)
    role: str = ADMIN


@dataclass(frozen=True)
class TokenBook:
    """The configured tokens, looked up by the bearer token a request carries."""

    tokens: tuple[NamedToken, ...] = ()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TokenBook:
        """The tokens of ML_API_ADMIN_TOKEN (as `admin`) and ML_API_ADMIN_TOKENS; refuses a bad list."""
        named = parse_named_tokens(config.get("ML_API_ADMIN_TOKENS") or "")
        single = config.get("ML_API_ADMIN_TOKEN")
        if single:
            named.insert(0, NamedToken(SINGLE_TOKEN_NAME, single.encode()))
        refuse_duplicates(named)
        return cls(tuple(named))

    def configured(self) -> bool:
        """Whether any token is configured."""
        return bool(self.tokens)

    def shortest(self) -> int:
        """The length of the shortest token (0 without any), for the start-up policy."""
        return min((len(token.secret) for token in self.tokens), default=0)

    def identify(self, authorization: str) -> Caller | None:
        """The caller whose token the header carries (`Bearer <token>`); None if it carries none of them.

        Every token is compared, in constant time, whether or not an earlier one matched.
        """
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return None
        presented = given.strip().encode()
        found = None
        for token in self.tokens:
            if hmac.compare_digest(presented, token.secret) and found is None:
                found = Caller(token.name, token.role)
        return found


def parse_named_tokens(raw: str) -> list[NamedToken]:
    """Reads `name:token,...`; an error names the entry by its position and name, never its token."""
    tokens = []
    for position, entry in enumerate(part.strip() for part in raw.split(",") if part.strip()):
        name, colon, secret = entry.partition(":")
        if not colon or not NAME.fullmatch(name.strip()) or not secret.strip():
            raise ValueError(
                f"ML_API_ADMIN_TOKENS entry {position + 1} must be name:token, the name 1 to 64 letters, "
                "digits or . _ @ -"
            )
        tokens.append(NamedToken(name.strip(), secret.strip().encode()))
    return tokens


def refuse_duplicates(tokens: list[NamedToken]) -> None:
    """Refuses two tokens of one name, or one token under two names (which would `by` be?)."""
    names = [token.name for token in tokens]
    for name in names:
        if names.count(name) > 1:
            where = " (ML_API_ADMIN_TOKEN's name)" if name == SINGLE_TOKEN_NAME else ""
            raise ValueError(f"admin token name {name!r}{where} is given twice")
    secrets = [token.secret for token in tokens]
    if len(set(secrets)) != len(secrets):
        raise ValueError("the same admin token is given under two names")


def caller_for(authorization: str, book: TokenBook, environment: str, action: str) -> Caller:
    """The admin making the request, from its Authorization header alone; refuses anyone else.

    Without any token configured, development lets anyone in and every other environment refuses (403).
    """
    if not book.configured():
        if environment != OPEN_ENVIRONMENT:
            raise AdminTokenRequired(
                f"{action} is disabled: this {environment} server has no admin token "
                "(ML_API_ADMIN_TOKEN or ML_API_ADMIN_TOKENS)."
            )
        return ANONYMOUS
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise Unauthorized(f"{action} needs an admin token: Authorization: Bearer <token>.")
    caller = book.identify(authorization)
    if caller is None:
        raise Unauthorized("The admin token is wrong.")
    return caller

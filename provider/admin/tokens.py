"""Admin bearer tokens: created once, stored as sha256 hashes, compared in constant time.

A *ticket* stands in for a token where a header cannot be sent (the console's EventSource):
``<token id>.<expiry unix>.<hmac>``, the HMAC-SHA256 of ``id.expiry`` keyed by the token's
stored hash. It is good for :data:`TICKET_SECONDS`, names no secret, and dies with its token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from sqlalchemy import Engine

from datastore.tokens import AdminTokenRepository, TokenInfo
from provider.errors import AdminError

__all__ = ["TICKET_SECONDS", "TokenError", "TokenInfo", "TokenStore"]

#: how long a ticket is good for (enough to open one event stream)
TICKET_SECONDS = 60


class TokenError(AdminError, ValueError):
    """A token operation that cannot be done; the message says why, ``status_code`` its
    HTTP status (409: the name is taken)."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """Admin tokens in the store's database (:class:`datastore.tokens.AdminTokenRepository`);
    token checks are read-only transactions."""

    def __init__(self, engine: Engine) -> None:
        self.rows = AdminTokenRepository(engine)

    def create(self, name: str) -> str:
        """A new token named ``name``; the clear token is returned once and never stored."""
        if not name.strip():
            raise TokenError("a token needs a non-empty name")
        token = "tw_" + secrets.token_urlsafe(32)
        if self.rows.add(name, _digest(token)) is None:
            raise TokenError(f"a token named {name!r} already exists", 409)
        return token

    def list(self) -> list[TokenInfo]:
        return self.rows.all()

    def revoke(self, name_or_id: str) -> bool:
        """Revoke the token with this name or id; False when none is live."""
        return self.rows.revoke(name_or_id)

    def is_valid(self, token: str) -> bool:
        """True when ``token`` is a live (unrevoked) admin token."""
        digest = _digest(token)
        found = False
        for _id, stored in self.rows.live_hashes():
            found |= hmac.compare_digest(stored, digest)
        return found

    def ticket(self, token: str) -> str:
        """A short-lived ticket for the live ``token`` (see the module docstring)."""
        digest = _digest(token)
        for token_id, stored in self.rows.live_hashes():
            if hmac.compare_digest(stored, digest):
                return _ticket(token_id, stored, int(time.time()) + TICKET_SECONDS)
        raise TokenError("admin API: invalid or revoked token", 403)

    def check_ticket(self, ticket: str) -> bool:
        """True when ``ticket`` is unexpired and its token still live."""
        token_id, _, rest = ticket.partition(".")
        expiry, _, _mac = rest.partition(".")
        if not expiry.isdigit() or int(expiry) < time.time():
            return False
        stored = self.rows.live_hash(token_id)
        return stored is not None and hmac.compare_digest(
            _ticket(token_id, stored, int(expiry)), ticket
        )


def _ticket(token_id: str, stored_hash: str, expiry: int) -> str:
    body = f"{token_id}.{expiry}"
    mac = hmac.new(stored_hash.encode(), body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{mac}"

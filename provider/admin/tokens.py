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
import uuid
import weakref
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Engine

from operator_engine.db import reading
from operator_engine.models import utcnow
from provider.errors import AdminError

metadata = sa.MetaData()
admin_tokens = sa.Table(
    "admin_tokens",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("date_created", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
)


#: how long a ticket is good for (enough to open one event stream)
TICKET_SECONDS = 60

_READY: weakref.WeakSet[Engine] = weakref.WeakSet()


class TokenError(AdminError, ValueError):
    """A token operation that cannot be done; the message says why, ``status_code`` its
    HTTP status (409: the name is taken)."""


@dataclass(frozen=True)
class TokenInfo:
    id: str
    name: str
    date_created: datetime
    revoked_at: datetime | None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    """Admin tokens in the job store's database (table ``admin_tokens``). The table is created
    once per database engine, not per request; token checks are read-only transactions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        if engine not in _READY:  # once per database, not per request
            metadata.create_all(engine)
            _READY.add(engine)

    def create(self, name: str) -> str:
        """A new token named ``name``; the clear token is returned once and never stored."""
        if not name.strip():
            raise TokenError("a token needs a non-empty name")
        token = "tw_" + secrets.token_urlsafe(32)
        with self.engine.begin() as conn:
            exists = conn.execute(
                sa.select(admin_tokens.c.id).where(admin_tokens.c.name == name)
            ).first()
            if exists is not None:
                raise TokenError(f"a token named {name!r} already exists", 409)
            conn.execute(
                admin_tokens.insert().values(
                    id=uuid.uuid4().hex[:12],
                    name=name,
                    token_hash=_digest(token),
                    date_created=utcnow(),
                )
            )
        return token

    def list(self) -> list[TokenInfo]:
        with reading(self.engine) as conn:
            rows = conn.execute(sa.select(admin_tokens).order_by(admin_tokens.c.date_created))
            return [TokenInfo(r.id, r.name, r.date_created, r.revoked_at) for r in rows]

    def revoke(self, name_or_id: str) -> bool:
        """Revoke the token with this name or id; False when none is live."""
        with self.engine.begin() as conn:
            return bool(
                conn.execute(
                    admin_tokens.update()
                    .where(
                        sa.or_(admin_tokens.c.name == name_or_id, admin_tokens.c.id == name_or_id),
                        admin_tokens.c.revoked_at.is_(None),
                    )
                    .values(revoked_at=utcnow())
                ).rowcount
            )

    def is_valid(self, token: str) -> bool:
        """True when ``token`` is a live (unrevoked) admin token."""
        digest = _digest(token)
        with reading(self.engine) as conn:
            hashes = conn.execute(
                sa.select(admin_tokens.c.token_hash).where(admin_tokens.c.revoked_at.is_(None))
            ).all()
        found = False
        for (stored,) in hashes:
            found |= hmac.compare_digest(stored, digest)
        return found

    def _live_hash(self, token_id: str) -> str | None:
        with reading(self.engine) as conn:
            row = conn.execute(
                sa.select(admin_tokens.c.token_hash).where(
                    admin_tokens.c.id == token_id, admin_tokens.c.revoked_at.is_(None)
                )
            ).first()
        return None if row is None else str(row.token_hash)

    def ticket(self, token: str) -> str:
        """A short-lived ticket for the live ``token`` (see the module docstring)."""
        digest = _digest(token)
        with reading(self.engine) as conn:
            rows = conn.execute(
                sa.select(admin_tokens.c.id, admin_tokens.c.token_hash).where(
                    admin_tokens.c.revoked_at.is_(None)
                )
            ).all()
        for token_id, stored in rows:
            if hmac.compare_digest(stored, digest):
                return _ticket(token_id, stored, int(time.time()) + TICKET_SECONDS)
        raise TokenError("admin API: invalid or revoked token", 403)

    def check_ticket(self, ticket: str) -> bool:
        """True when ``ticket`` is unexpired and its token still live."""
        token_id, _, rest = ticket.partition(".")
        expiry, _, _mac = rest.partition(".")
        if not expiry.isdigit() or int(expiry) < time.time():
            return False
        stored = self._live_hash(token_id)
        return stored is not None and hmac.compare_digest(
            _ticket(token_id, stored, int(expiry)), ticket
        )


def _ticket(token_id: str, stored_hash: str, expiry: int) -> str:
    body = f"{token_id}.{expiry}"
    mac = hmac.new(stored_hash.encode(), body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{mac}"

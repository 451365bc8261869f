"""Admin bearer tokens (table ``admin_tokens``): names and sha256 hashes, never a token."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Engine

from datastore.engine import reading
from datastore.schema import admin_tokens
from operator_engine.models import utcnow


@dataclass(frozen=True)
class TokenInfo:
    id: str
    name: str
    date_created: datetime
    revoked_at: datetime | None


class AdminTokenRepository:
    """The ``admin_tokens`` rows of one store; reads are read-only transactions."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, name: str, token_hash: str) -> str | None:
        """A new live token ``name`` with ``token_hash``; its id, or None when the name is
        taken."""
        with self.engine.begin() as conn:
            taken = conn.execute(
                sa.select(admin_tokens.c.id).where(admin_tokens.c.name == name)
            ).first()
            if taken is not None:
                return None
            token_id = uuid.uuid4().hex[:12]
            conn.execute(
                admin_tokens.insert().values(
                    id=token_id, name=name, token_hash=token_hash, date_created=utcnow()
                )
            )
        return token_id

    def all(self) -> list[TokenInfo]:
        """Every token, oldest first (revoked ones included)."""
        with reading(self.engine) as conn:
            rows = conn.execute(sa.select(admin_tokens).order_by(admin_tokens.c.date_created))
            return [TokenInfo(r.id, r.name, r.date_created, r.revoked_at) for r in rows]

    def revoke(self, name_or_id: str) -> bool:
        """Revoke the live token with this name or id; False when none is live."""
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

    def live_hashes(self) -> list[tuple[str, str]]:
        """(id, token hash) of every live token."""
        with reading(self.engine) as conn:
            rows = conn.execute(
                sa.select(admin_tokens.c.id, admin_tokens.c.token_hash).where(
                    admin_tokens.c.revoked_at.is_(None)
                )
            ).all()
        return [(str(r.id), str(r.token_hash)) for r in rows]

    def live_hash(self, token_id: str) -> str | None:
        """The hash of live token ``token_id``; None when it is unknown or revoked."""
        with reading(self.engine) as conn:
            row = conn.execute(
                sa.select(admin_tokens.c.token_hash).where(
                    admin_tokens.c.id == token_id, admin_tokens.c.revoked_at.is_(None)
                )
            ).first()
        return None if row is None else str(row.token_hash)

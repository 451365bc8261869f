"""Platform credentials of compute environments (table ``admin_credentials``), sealed: the
repository stores and returns the encrypted keys as given (see
:mod:`operator_engine.credentials` for the encryption)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from datastore.engine import reading
from datastore.schema import admin_credentials
from operator_engine.models import utcnow

_TABLE = admin_credentials


@dataclass(frozen=True)
class SealedCredential:
    """One stored credential, its keys still encrypted."""

    id: str
    name: str
    provider: str
    description: str
    keys_encrypted: bytes
    date_created: datetime
    last_updated: datetime


def _sealed(row: Any) -> SealedCredential:
    return SealedCredential(
        row.id,
        row.name,
        row.provider,
        row.description,
        bytes(row.keys_encrypted),
        row.date_created,
        row.last_updated,
    )


class CredentialRepository:
    """The ``admin_credentials`` rows of one store."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def add(self, name: str, provider: str, description: str, sealed: bytes) -> str | None:
        """Store a credential; its new id, or None when ``name`` is taken."""
        now = utcnow()
        with self.engine.begin() as conn:
            taken = conn.execute(sa.select(_TABLE.c.id).where(_TABLE.c.name == name)).first()
            if taken is not None:
                return None
            cred_id = uuid.uuid4().hex[:22]
            conn.execute(
                _TABLE.insert().values(
                    id=cred_id,
                    name=name,
                    provider=provider,
                    description=description,
                    keys_encrypted=sealed,
                    date_created=now,
                    last_updated=now,
                )
            )
        return cred_id

    def all(self) -> list[SealedCredential]:
        """Every credential, oldest first."""
        with reading(self.engine) as conn:
            rows = conn.execute(sa.select(_TABLE).order_by(_TABLE.c.date_created)).all()
        return [_sealed(r) for r in rows]

    def get(self, cred_id: str) -> SealedCredential | None:
        with reading(self.engine) as conn:
            row = conn.execute(sa.select(_TABLE).where(_TABLE.c.id == cred_id)).first()
        return None if row is None else _sealed(row)

    def exists(self, cred_id: str) -> bool:
        with reading(self.engine) as conn:
            found = conn.execute(sa.select(_TABLE.c.id).where(_TABLE.c.id == cred_id)).first()
        return found is not None

    def delete(self, cred_id: str) -> bool:
        with self.engine.begin() as conn:
            return bool(conn.execute(_TABLE.delete().where(_TABLE.c.id == cred_id)).rowcount)

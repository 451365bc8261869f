"""What the C2D v2 API keeps beside the engine's rows: its jobs' terms (``node_jobs``, written
once at submission) and the auth tokens invalidated before their expiry
(``node_revoked_tokens``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from datastore.engine import reading
from datastore.schema import node_jobs, node_revoked_tokens
from operator_engine.models import utcnow


@dataclass(frozen=True)
class NodeJob:
    job_id: str
    kind: str  # "free" or "paid"
    environment: str
    agreement_id: str | None
    resources: dict[str, float]
    max_duration: int


def _record(row: Any) -> NodeJob:
    return NodeJob(
        job_id=row.job_id,
        kind=row.kind,
        environment=row.environment,
        agreement_id=row.agreement_id,
        resources=dict(row.resources),
        max_duration=int(row.max_duration),
    )


class NodeJobs:
    """The ``node_jobs`` table of one store."""

    def __init__(self, db: Engine) -> None:
        self.db = db

    def add(self, record: NodeJob) -> None:
        with self.db.begin() as conn:
            conn.execute(
                node_jobs.insert().values(
                    job_id=record.job_id,
                    kind=record.kind,
                    environment=record.environment,
                    agreement_id=record.agreement_id,
                    resources=record.resources,
                    max_duration=record.max_duration,
                    created_at=utcnow(),
                )
            )

    def get(self, job_id: str) -> NodeJob | None:
        with reading(self.db) as conn:
            row = conn.execute(sa.select(node_jobs).where(node_jobs.c.job_id == job_id)).first()
        return None if row is None else _record(row)

    def many(self, job_ids: list[str]) -> dict[str, NodeJob]:
        if not job_ids:
            return {}
        with reading(self.db) as conn:
            rows = conn.execute(
                sa.select(node_jobs).where(node_jobs.c.job_id.in_(job_ids))
            ).fetchall()
        return {row.job_id: _record(row) for row in rows}


class RevokedTokens:
    """C2D v2 auth tokens (by ``jti``) invalidated before they expire."""

    def __init__(self, db: Engine) -> None:
        self.db = db

    def is_revoked(self, jti: str) -> bool:
        with reading(self.db) as conn:
            hit = conn.execute(
                sa.select(node_revoked_tokens.c.jti).where(node_revoked_tokens.c.jti == jti)
            ).first()
        return hit is not None

    def revoke(self, jti: str, expires_at: int) -> None:
        """Record ``jti`` as revoked (``expires_at``: unix seconds it would have expired)."""
        with self.db.begin() as conn:
            conn.execute(node_revoked_tokens.insert().values(jti=jti, expires_at=expires_at))

"""What the C2D v2 API knows of its jobs beyond the engine's row: free or paid, the order that
admitted it (``agreementId``), the resources and duration it was priced for.

One table, ``node_jobs``, in the shared store; written once when a job is submitted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import current_app

from operator_engine.db import reading
from operator_engine.models import utcnow

metadata = sa.MetaData()
node_jobs = sa.Table(
    "node_jobs",
    metadata,
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("environment", sa.String(128), nullable=False),
    sa.Column("agreement_id", sa.String(128), index=True),
    sa.Column("resources", sa.JSON, nullable=False),
    sa.Column("max_duration", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class NodeJob:
    job_id: str
    kind: str  # "free" or "paid"
    environment: str
    agreement_id: str | None
    resources: dict[str, float]
    max_duration: int


class NodeJobs:
    """The ``node_jobs`` table of one store."""

    def __init__(self, db: sa.Engine) -> None:
        self.db = db
        metadata.create_all(db, tables=[node_jobs])

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


def _record(row: Any) -> NodeJob:
    return NodeJob(
        job_id=row.job_id,
        kind=row.kind,
        environment=row.environment,
        agreement_id=row.agreement_id,
        resources=dict(row.resources),
        max_duration=int(row.max_duration),
    )


def node_jobs_of_app() -> NodeJobs:
    """The app's :class:`NodeJobs`, built on first use."""
    found = current_app.extensions.get("tidewater_node_jobs")
    if found is None:
        found = NodeJobs(current_app.extensions["tidewater"].db)
        current_app.extensions["tidewater_node_jobs"] = found
    return found  # type: ignore[no-any-return]

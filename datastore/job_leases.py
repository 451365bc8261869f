"""Claims and leases: which worker holds which job, until when.

Each claim, heartbeat and take-over stores the lease's *expiry* (``lease_expires_at``),
computed with the holding worker's own lease length, so workers with different lease settings
judge each other's leases correctly; a row without an expiry (a store made before that column)
falls back to its heartbeat plus the reader's lease length. Claims are atomic: SQLite takes the
write lock up front (``BEGIN IMMEDIATE``, see :mod:`datastore.engine`); PostgreSQL serialises
claims with a transaction-scoped advisory lock (so per-environment capacity is counted
consistently) and locks the claimed row ``FOR UPDATE SKIP LOCKED``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from datastore.engine import is_sqlite, reading
from datastore.job_records import job_from
from datastore.job_writes import write_status
from datastore.prepared import PreparedWrite
from datastore.schema import jobs
from operator_engine.models import ComputeEnvironment, Job, utcnow
from operator_engine.statuses import IN_FLIGHT, OCCUPYING, JobStatus

_LEASE_COLUMNS = (
    jobs.c.job_id,
    jobs.c.status,
    jobs.c.worker_id,
    jobs.c.heartbeat_at,
    jobs.c.lease_expires_at,
)

#: a worker lets go of a job (the end of every walk)
_RELEASE = PreparedWrite(
    jobs.update()
    .where(jobs.c.job_id == sa.bindparam("job"), jobs.c.worker_id == sa.bindparam("holder"))
    .values(worker_id=None, heartbeat_at=None, lease_expires_at=None)
)

#: in-flight jobs per environment (what a claim counts against ``maxJobs``)
_BUSY = (
    sa.select(jobs.c.environment, sa.func.count())
    .where(jobs.c.status.in_([int(s) for s in OCCUPYING]))
    .group_by(jobs.c.environment)
)
#: the oldest queued job of the environments ``envs`` (statements built once: SQLAlchemy
#: caches their compiled form)
_OLDEST = (
    sa.select(jobs.c.job_id)
    .where(jobs.c.status == int(JobStatus.WARMING_UP))
    .where(jobs.c.environment.in_(sa.bindparam("envs", expanding=True)))
    .order_by(jobs.c.date_created, jobs.c.job_id)
    .limit(1)
)
#: PostgreSQL: the same, skipping rows another claim holds
_OLDEST_UNLOCKED = _OLDEST.with_for_update(skip_locked=True)
_ROW = sa.select(jobs).where(jobs.c.job_id == sa.bindparam("job"))

_CLAIM_LOCK_KEY = 0x7469_6465  # "tide": one advisory lock serialises PostgreSQL claims


class JobLeases:
    """The lease half of :class:`datastore.jobs.JobStore`."""

    engine: Engine

    def claim(
        self,
        worker_id: str,
        envs: Mapping[str, ComputeEnvironment],
        lease_seconds: float = 30.0,
    ) -> Job | None:
        """Atomically move the oldest queued job whose environment has room to STARTED, owned
        by ``worker_id`` for ``lease_seconds``. Room = fewer than ``maxJobs`` in-flight jobs in
        that environment (a job settling its payment at 71 no longer counts)."""
        now = utcnow()
        with self.engine.begin() as conn:
            sqlite = is_sqlite(self.engine)
            if not sqlite:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_CLAIM_LOCK_KEY)))
            busy: dict[str, int] = dict(conn.execute(_BUSY).all())  # type: ignore[arg-type]
            open_envs = [
                env_id for env_id, env in envs.items() if busy.get(env_id, 0) < env.max_jobs
            ]
            if not open_envs:
                return None
            oldest = _OLDEST if sqlite else _OLDEST_UNLOCKED
            job_id = conn.execute(oldest, {"envs": open_envs}).scalar()
            if job_id is None:
                return None
            if not write_status(
                conn,
                job_id,
                JobStatus.WARMING_UP,
                JobStatus.STARTED,
                at=now,
                detail=f"claimed by {worker_id}",
                worker_id=worker_id,
                heartbeat_at=now,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
            ):
                return None
            row = conn.execute(_ROW, {"job": job_id}).one()
            return job_from(row, [])  # a job just out of the queue has no results yet

    def heartbeat(self, job_id: str, worker_id: str, lease_seconds: float = 30.0) -> bool:
        """Renew the lease for ``lease_seconds``; False when the job is no longer this
        worker's."""
        now = utcnow()
        with self.engine.begin() as conn:
            return bool(
                conn.execute(
                    jobs.update()
                    .where(jobs.c.job_id == job_id, jobs.c.worker_id == worker_id)
                    .values(
                        heartbeat_at=now, lease_expires_at=now + timedelta(seconds=lease_seconds)
                    )
                ).rowcount
            )

    def release(self, job_id: str, worker_id: str) -> None:
        """Drop ``worker_id``'s lease on ``job_id`` (one statement, compiled once)."""
        _RELEASE.run(self.engine, job=job_id, holder=worker_id)

    def in_flight_rows(self) -> list[Any]:
        """(job_id, status, worker_id, heartbeat_at, lease_expires_at) of in-flight jobs."""
        with reading(self.engine) as conn:
            return list(
                conn.execute(
                    sa.select(*_LEASE_COLUMNS).where(jobs.c.status.in_([int(s) for s in IN_FLIGHT]))
                ).all()
            )

    def take_over(
        self, job_id: str, old_worker: str | None, new_worker: str, lease_seconds: float = 30.0
    ) -> bool:
        """Take a lost job's lease for ``lease_seconds``, only if nobody else did first."""
        cond = jobs.c.worker_id.is_(None) if old_worker is None else jobs.c.worker_id == old_worker
        now = utcnow()
        with self.engine.begin() as conn:
            return bool(
                conn.execute(
                    jobs.update()
                    .where(jobs.c.job_id == job_id, cond)
                    .where(jobs.c.status.in_([int(s) for s in IN_FLIGHT]))
                    .values(
                        worker_id=new_worker,
                        heartbeat_at=now,
                        lease_expires_at=now + timedelta(seconds=lease_seconds),
                    )
                ).rowcount
            )

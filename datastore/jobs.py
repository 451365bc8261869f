"""The job store: the one truth about every job (SQLAlchemy Core; SQLite or PostgreSQL).

Every status write (submit, claim, :meth:`JobStore.transition`) goes through
:func:`datastore.job_writes.write_status`: a guarded ``UPDATE … WHERE status = :from`` (or the
new row's INSERT) that writes a ``job_events`` row in the same transaction; the transition raises
:class:`TransitionError` when no row changed. Reads are in :mod:`datastore.job_reads`, claims and
leases in :mod:`datastore.job_leases`, reports for the admin API and console in
:mod:`datastore.job_reports`; the environments an operator manages are
:attr:`JobStore.environments`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from datastore.environments import EnvironmentRepository
from datastore.job_leases import JobLeases
from datastore.job_reads import JobReads
from datastore.job_records import (
    OrderAlreadyUsed,
    ResultRecord,
    StoreError,
    TransitionError,
    request_to_json,
)
from datastore.job_reports import JobReports
from datastore.job_writes import consume_orders, paid_job, replace_results, write_status
from datastore.schema import job_events, job_results, jobs
from operator_engine.lifecycle import StopReason
from operator_engine.models import Job, JobRequest, Payments, utcnow
from operator_engine.statuses import JobStatus, sources_of

__all__ = ["JobStore", "OrderAlreadyUsed", "ResultRecord", "StoreError", "TransitionError"]


class JobStore(JobReads, JobLeases, JobReports):
    """Job rows, results and events on one SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        #: the environments an operator manages through the admin API
        self.environments = EnvironmentRepository(engine)

    def insert(
        self,
        request: JobRequest,
        *,
        algo_did: str,
        payments: Payments | None = None,
        job_id: str | None = None,
    ) -> tuple[Job, bool]:
        """Insert a queued job (id ``job_id`` or a new one); returns (job, created).

        With ``payments``, they are recorded as consumed in the same transaction
        (:func:`consume_orders`): the job they all started is returned (created False) and any
        other use raises :class:`OrderAlreadyUsed`. Without, the same ``agreement_id``
        returns the existing job."""
        now = utcnow()
        job_id = job_id or request.job_id or uuid.uuid4().hex
        values = {
            "owner": request.owner.lower(),
            "environment": request.environment,
            "stopreq": int(StopReason.NONE),
            "oom_killed": False,
            "agreement_id": request.agreement_id,
            "request": request_to_json(request),
            "input_dids": [d.did for d in request.datasets],
            "algo_did": algo_did,
            "date_created": now,
            "expire_timestamp": request.expire_timestamp,
        }
        if payments is None and request.agreement_id is not None:
            existing = self.by_agreement(request.agreement_id)
            if existing is not None:
                return existing, False
        try:
            with self.engine.begin() as conn:
                paid = paid_job(conn, payments) if payments else None
                if paid is not None:
                    return paid, False
                write_status(
                    conn, job_id, None, JobStatus.WARMING_UP, at=now, detail="submitted", **values
                )
                if payments:
                    consume_orders(conn, payments.chain_id, payments.tx_ids, job_id)
        except sa.exc.IntegrityError:
            # a concurrent submit won (PostgreSQL; SQLite writers are serialised): judge again
            existing = self.job_paid_by(payments) if payments else None
            if existing is None and request.agreement_id:
                existing = self.by_agreement(request.agreement_id)
            if existing is None:
                raise
            return existing, False
        job = self.get(job_id)
        assert job is not None
        return job, True

    def transition(
        self,
        job_id: str,
        from_: JobStatus | Iterable[JobStatus] | None,
        to: JobStatus,
        *,
        detail: str | None = None,
        via: Sequence[JobStatus] = (),
        results: list[ResultRecord] | None = None,
        **values: Any,
    ) -> JobStatus:
        """Move ``job_id`` to ``to`` if it is in ``from_`` (default: any allowed source).

        Returns the status it left. ``values`` are extra columns set in the same UPDATE
        (``stopreq``, ``exit_code``, ``oom_killed``, ``reason``, ``worker_id``…) besides the
        lifecycle's :func:`~operator_engine.lifecycle.stamps` (see :func:`write_status`).
        ``via``: statuses the job passes through first, each written with its event in the
        same transaction (a worker entering a stage with no work and the next one at once).
        ``results``: the job's results, replaced in the same transaction.
        """
        first = via[0] if via else to
        allowed = sources_of(first)
        if from_ is not None:
            wanted = {from_} if isinstance(from_, JobStatus) else set(from_)
            allowed = allowed & frozenset(wanted)
        # one known source: the guarded UPDATE alone decides (the row is read on a refusal)
        left = from_ if isinstance(from_, JobStatus) and from_ in allowed else None
        steps = (*via, to)
        with self.engine.begin() as conn:
            at = utcnow()
            if left is None:
                current = conn.execute(
                    sa.select(jobs.c.status).where(jobs.c.job_id == job_id)
                ).scalar()
                if current is None or current not in {int(s) for s in allowed}:
                    raise TransitionError(
                        job_id, first, None if current is None else JobStatus(current)
                    )
                left = JobStatus(current)
            step = left
            for n, status in enumerate(steps):
                last = n == len(steps) - 1
                if not write_status(
                    conn,
                    job_id,
                    step,
                    status,
                    at=at,
                    detail=detail if last else None,
                    **(values if last else {}),
                ):
                    now = conn.execute(
                        sa.select(jobs.c.status).where(jobs.c.job_id == job_id)
                    ).scalar()
                    raise TransitionError(job_id, status, None if now is None else JobStatus(now))
                step = status
                if last and results is not None:
                    replace_results(conn, job_id, results)
        return left

    def update(self, job_id: str, **values: Any) -> bool:
        """Set non-status columns (never ``status``: that is :meth:`transition`'s)."""
        if "status" in values:
            raise ValueError("status changes go through transition()")
        with self.engine.begin() as conn:
            return bool(
                conn.execute(jobs.update().where(jobs.c.job_id == job_id).values(**values)).rowcount
            )

    def set_results(self, job_id: str, results: list[ResultRecord]) -> None:
        """Replace the job's results (idempotent: a resumed publish rewrites them)."""
        with self.engine.begin() as conn:
            replace_results(conn, job_id, results)

    def clear_results(self, job_id: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(job_results.delete().where(job_results.c.job_id == job_id))
            conn.execute(
                jobs.update().where(jobs.c.job_id == job_id).values(results_expire_at=None)
            )

    def delete(self, job_id: str) -> bool:
        with self.engine.begin() as conn:
            conn.execute(job_results.delete().where(job_results.c.job_id == job_id))
            conn.execute(job_events.delete().where(job_events.c.job_id == job_id))
            return bool(conn.execute(jobs.delete().where(jobs.c.job_id == job_id)).rowcount)

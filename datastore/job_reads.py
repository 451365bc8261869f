"""The job store's reads (each one statement, or one read-only transaction).

The status route's read (:meth:`JobReads.find`) and a worker's stop check
(:meth:`JobReads.holder`) run one statement compiled once per dialect on the DBAPI connection
(:class:`datastore.prepared.PreparedRead`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from datastore.engine import reading
from datastore.job_records import (
    RESULT_COLUMNS,
    job_from,
    jobs_of,
    request_from_json,
    results_from_json,
)
from datastore.job_writes import order_holders, paid_job
from datastore.json_rows import json_rows
from datastore.prepared import PreparedRead
from datastore.schema import job_events, job_results, jobs
from operator_engine.models import Job, JobRequest, JobResult, Payments, utcnow
from operator_engine.statuses import TERMINAL, JobStatus

# The status route's read (JobStore.find), compiled once: an owner's jobs, or one of them, each
# in one row with its results as one JSON array (json_rows). One statement reads one snapshot,
# so it needs no transaction of its own; one row per job keeps SQLite's steps, each of which
# releases the GIL, to one per job.
_BY_OWNER = jobs.c.owner == sa.bindparam("owner")
#: What a Job shows (job_from): never the private request, which would be decoded for nothing.
_SHOWN = [
    jobs.c[name]
    for name in (
        "job_id owner environment status date_created input_dids algo_did date_finished "
        "agreement_id expire_timestamp stopreq exit_code oom_killed reason"
    ).split()
]
_RESULTS = (
    sa.select(json_rows(*RESULT_COLUMNS))
    .where(job_results.c.job_id == jobs.c.job_id)
    .scalar_subquery()
    .label("results")
)
_WITH_RESULTS = sa.select(*_SHOWN, _RESULTS).order_by(jobs.c.date_created, jobs.c.job_id)
#: A worker's stop check (JobReads.holder), several times per job: two columns, one statement.
_HOLDER = PreparedRead(
    sa.select(jobs.c.status, jobs.c.worker_id).where(jobs.c.job_id == sa.bindparam("job_id"))
)
#: computeResult's file (JobReads.result_path).
_RESULT = PreparedRead(
    sa.select(job_results).where(
        job_results.c.job_id == sa.bindparam("job_id"), job_results.c.idx == sa.bindparam("idx")
    )
)
_OWNER_JOBS = PreparedRead(_WITH_RESULTS.where(_BY_OWNER))
_OWNER_JOB = PreparedRead(_WITH_RESULTS.where(_BY_OWNER, jobs.c.job_id == sa.bindparam("job_id")))


def _shown_job(make: Any, raw: Any) -> Job:
    """The Job of a raw status row; the same Job object while the row is unchanged (so its
    Ocean JSON is encoded once: ``Job.ocean_json``). A row the driver gave unhashable values
    (PostgreSQL's decoded JSON) is decoded every time."""
    try:
        return _memo_job(make, raw)
    except TypeError:
        return _decode_job(make, raw)


def _decode_job(make: Any, raw: Any) -> Job:
    row = make(raw)
    return job_from(row, results_from_json(row.results))


#: The status route's recently read rows: the key is the whole raw row (every column the Job
#: shows, its results included), so a changed job is a new key; bounded per process.
_memo_job = lru_cache(maxsize=1024)(_decode_job)


class JobReads:
    """The read half of :class:`datastore.jobs.JobStore`."""

    engine: Engine

    def get(self, job_id: str) -> Job | None:
        with reading(self.engine) as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.job_id == job_id)).first()
            return None if row is None else jobs_of(conn, [row])[0]

    def row(self, job_id: str) -> Any | None:
        """The raw row (includes private columns: request, worker_id, container_id…)."""
        with reading(self.engine) as conn:
            return conn.execute(sa.select(jobs).where(jobs.c.job_id == job_id)).first()

    def holder(self, job_id: str) -> tuple[JobStatus, str | None] | None:
        """The job's status and the worker holding it (None: no such job); what a worker asks
        at every stage boundary, without reading (and decoding) the rest of the row."""
        rows = _HOLDER.rows(self.engine, job_id=job_id)
        return None if not rows else (JobStatus(rows[0].status), rows[0].worker_id)

    def request_of(self, job_id: str) -> JobRequest | None:
        row = self.row(job_id)
        return None if row is None or not row.request else request_from_json(row.request)

    def find(self, owner: str, *, job_id: str | None = None, did: str | None = None) -> list[Job]:
        """``owner``'s jobs (only ``job_id`` when given; only those that read ``did`` when
        given), oldest first. The status route's read: one prepared statement."""
        if job_id is None:
            read, params = _OWNER_JOBS, {"owner": owner.lower()}
        else:
            read, params = _OWNER_JOB, {"owner": owner.lower(), "job_id": job_id}
        make = read.maker(self.engine.dialect)
        found = [_shown_job(make, raw) for raw in read.fetch(self.engine, **params)]
        return [j for j in found if did is None or did in j.input_dids]

    def result_path(self, job_id: str, index: int) -> tuple[str, JobResult] | None:
        """Where result ``index`` of ``job_id`` is stored (relative to the job's folder), and
        its entry; computeResult's read (one prepared statement)."""
        rows = _RESULT.rows(self.engine, job_id=job_id, idx=index)
        if not rows:
            return None
        r = rows[0]
        return r.path, JobResult(r.filename, r.filesize, r.type, r.idx, r.sha256)

    def events(self, job_id: str) -> list[tuple[int | None, int, str | None]]:
        with reading(self.engine) as conn:
            rows = conn.execute(
                sa.select(job_events.c.from_status, job_events.c.to_status, job_events.c.detail)
                .where(job_events.c.job_id == job_id)
                .order_by(job_events.c.id)
            ).all()
        return [(r[0], r[1], r[2]) for r in rows]

    def status_counts(self) -> list[tuple[str, int, int]]:
        """(environment, status, jobs) for every pair that has jobs (metrics read this)."""
        with reading(self.engine) as conn:
            rows = conn.execute(
                sa.select(jobs.c.environment, jobs.c.status, sa.func.count()).group_by(
                    jobs.c.environment, jobs.c.status
                )
            ).all()
        return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]

    def live_counts(self) -> dict[str, int]:
        """Live (queued and in-flight) jobs per environment."""
        live = [int(s) for s in JobStatus if s not in TERMINAL]
        with reading(self.engine) as conn:
            rows = conn.execute(
                sa.select(jobs.c.environment, sa.func.count())
                .where(jobs.c.status.in_(live))
                .group_by(jobs.c.environment)
            ).all()
        return {r[0]: int(r[1]) for r in rows}

    def job_ids(self, statuses: Iterable[JobStatus] | None = None) -> list[str]:
        query = sa.select(jobs.c.job_id)
        if statuses is not None:
            query = query.where(jobs.c.status.in_([int(s) for s in statuses]))
        with reading(self.engine) as conn:
            return [r[0] for r in conn.execute(query).all()]

    # -- writing -----------------------------------------------------------------------------

    def job_paid_by(self, payments: Payments) -> Job | None:
        """The job ``payments`` started, when exactly these payments started it; None when
        none of them is consumed; :class:`OrderAlreadyUsed` for any other use."""
        with reading(self.engine) as conn:
            return paid_job(conn, payments)

    def consumed(self, chain_id: int, tx_ids: Iterable[str]) -> set[str]:
        """Which of ``tx_ids`` (lowercased) already started a job on ``chain_id``."""
        with reading(self.engine) as conn:
            return set(order_holders(conn, chain_id, [tx.lower() for tx in tx_ids]))

    def by_agreement(self, agreement_id: str) -> Job | None:
        with reading(self.engine) as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.agreement_id == agreement_id)).first()
            return None if row is None else jobs_of(conn, [row])[0]

    def expired(self, now: datetime | None = None) -> list[str]:
        """Terminal jobs whose results are past their storage expiry."""
        with reading(self.engine) as conn:
            return [
                r[0]
                for r in conn.execute(
                    sa.select(jobs.c.job_id).where(
                        jobs.c.results_expire_at.is_not(None),
                        jobs.c.results_expire_at < (now or utcnow()),
                    )
                ).all()
            ]

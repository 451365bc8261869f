"""The job store: the one truth about every job (SQLAlchemy Core; SQLite or PostgreSQL).

Every status write (submit, claim, :meth:`JobStore.transition`) goes through
:func:`write_status`: a guarded ``UPDATE … WHERE status = :from`` (or the new row's INSERT)
that writes a ``job_events`` row in the same transaction; the transition raises
:class:`TransitionError` when no row changed. Claims are atomic: SQLite takes the write lock up
front (``BEGIN IMMEDIATE``, see :mod:`operator_engine.db`); PostgreSQL serialises claims with a
transaction-scoped advisory lock (so per-environment capacity is counted consistently) and
locks the claimed row ``FOR UPDATE SKIP LOCKED``.

Leases: each claim, heartbeat and take-over stores the lease's *expiry*
(``lease_expires_at``), computed with the holding worker's own lease length, so workers with
different lease settings judge each other's leases correctly. Stores created before that
column existed get it added by :meth:`JobStore.create_tables` (see
:func:`operator_engine.db.add_missing_columns`); a row without an expiry falls back to its
heartbeat plus the reader's lease length.

The ``request`` column never holds decrypted file objects: :func:`request_to_json` leaves
every ``files`` list out (they live in the job's 0700 folder, see
:mod:`operator_engine.file_objects`).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from operator_engine.db import PreparedRead, add_missing_columns, raw_reading, reading
from operator_engine.lifecycle import EnvState, StopReason, is_allowed, stamps
from operator_engine.models import (
    AlgorithmInput,
    ComputeEnvironment,
    DatasetInput,
    Job,
    JobRequest,
    JobResult,
    Payments,
    utcnow,
)
from operator_engine.statuses import IN_FLIGHT, OCCUPYING, TERMINAL, JobStatus, sources_of

metadata = sa.MetaData()
_TS = sa.DateTime(timezone=True)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("job_id", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False, index=True),
    sa.Column("environment", sa.String(128), nullable=False, index=True),
    sa.Column("status", sa.Integer, nullable=False, index=True),
    sa.Column("stopreq", sa.Integer, nullable=False, default=0),
    sa.Column("exit_code", sa.Integer),
    sa.Column("oom_killed", sa.Boolean, nullable=False, default=False),
    sa.Column("reason", sa.Text),
    sa.Column("agreement_id", sa.String(128), unique=True),
    # Private engine state (the request without its file objects), scrubbed once terminal.
    sa.Column("request", sa.JSON),
    sa.Column("input_dids", sa.JSON, nullable=False),
    sa.Column("algo_did", sa.String(128), nullable=False),
    sa.Column("date_created", _TS, nullable=False),
    sa.Column("date_started", _TS),
    sa.Column("date_finished", _TS),
    sa.Column("expire_timestamp", sa.BigInteger),
    sa.Column("worker_id", sa.String(200)),
    sa.Column("heartbeat_at", _TS),
    sa.Column("lease_expires_at", _TS),
    sa.Column("container_id", sa.String(100)),
    sa.Column("results_expire_at", _TS),
)

job_results = sa.Table(
    "job_results",
    metadata,
    sa.Column("job_id", sa.String(64), sa.ForeignKey("jobs.job_id", ondelete="CASCADE")),
    sa.Column("idx", sa.Integer, nullable=False),
    sa.Column("filename", sa.Text, nullable=False),
    sa.Column("filesize", sa.BigInteger, nullable=False),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("job_id", "idx"),
)

job_events = sa.Table(
    "job_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "job_id",
        sa.String(64),
        sa.ForeignKey("jobs.job_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    sa.Column("from_status", sa.Integer),
    sa.Column("to_status", sa.Integer, nullable=False),
    sa.Column("at", _TS, nullable=False),
    sa.Column("detail", sa.Text),
)

compute_envs = sa.Table(
    "compute_envs",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, default=""),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("platform", sa.String(64), nullable=False, default="docker"),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, default=EnvState.CREATING.value),
    sa.Column("message", sa.Text),
    sa.Column("is_primary", sa.Boolean, nullable=False, default=False),
    sa.Column("source", sa.String(8), nullable=False, default="api"),
    sa.Column("date_created", _TS, nullable=False),
    sa.Column("last_updated", _TS, nullable=False),
    sa.Column("last_used", _TS),
)

_LEASE_COLUMNS = (
    jobs.c.job_id,
    jobs.c.status,
    jobs.c.worker_id,
    jobs.c.heartbeat_at,
    jobs.c.lease_expires_at,
)

#: Payment transactions that started a job (docs/protocol.md §5: each starts at most one), keyed by
#: chain and lowercased tx hash. No foreign key and never deleted with the job: deleting a job
#: does not give its payment back.
consumed_orders = sa.Table(
    "consumed_orders",
    metadata,
    sa.Column("chain_id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("tx_id", sa.String(66), primary_key=True),
    sa.Column("job_id", sa.String(64), nullable=False, index=True),
    sa.Column("consumed_at", _TS, nullable=False),
)

#: one-value settings the engine keeps in the store (the primary environment's id)
engine_settings = sa.Table(
    "engine_settings",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

_CLAIM_LOCK_KEY = 0x7469_6465  # "tide": one advisory lock serialises PostgreSQL claims


class StoreError(RuntimeError):
    """Base of the store's errors."""


class TransitionError(StoreError):
    """A guarded transition changed no row: the job is gone or not in an allowed status."""

    def __init__(self, job_id: str, to: JobStatus, current: JobStatus | None) -> None:
        self.job_id = job_id
        self.to = to
        self.current = current
        where = "does not exist" if current is None else f"is at {int(current)}"
        super().__init__(f"job {job_id} cannot move to {int(to)}: it {where}")


class OrderAlreadyUsed(StoreError):
    """Some of the payments already started another job (or a deleted one)."""

    def __init__(self, tx_ids: Sequence[str]) -> None:
        self.tx_ids = tuple(tx_ids)
        super().__init__(f"order {', '.join(self.tx_ids)} already started a job")


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def request_to_json(request: JobRequest) -> dict[str, Any]:
    """The request as stored: every ``files`` list (decrypted file objects) left empty."""
    data = dataclasses.asdict(request)
    for dataset in data["datasets"]:
        dataset["files"] = []
    data["algorithm"]["files"] = []
    return data


def request_from_json(data: Mapping[str, Any]) -> JobRequest:
    return JobRequest(
        owner=data["owner"],
        environment=data["environment"],
        datasets=[DatasetInput(**d) for d in data["datasets"]],
        algorithm=AlgorithmInput(**data["algorithm"]),
        agreement_id=data.get("agreement_id"),
        expire_timestamp=data.get("expire_timestamp"),
        job_id=data.get("job_id"),
        max_duration=data.get("max_duration"),
        chain_id=data.get("chain_id"),
    )


@dataclasses.dataclass(frozen=True)
class ResultRecord:
    """A result as publish records it (``path`` is relative to the job folder)."""

    filename: str
    filesize: int
    type: str
    sha256: str
    path: str


def _assemble(rows: Sequence[Any], result_rows: Iterable[Any]) -> list[Job]:
    """Jobs from their ``jobs`` rows and their ``job_results`` rows (ordered by job, index)."""
    results: dict[str, list[JobResult]] = {row.job_id: [] for row in rows}
    for r in result_rows:
        if r.job_id in results:
            results[r.job_id].append(JobResult(r.filename, r.filesize, r.type, r.idx, r.sha256))
    return [
        Job(
            job_id=row.job_id,
            owner=row.owner,
            environment=row.environment,
            status=JobStatus(row.status),
            date_created=_aware(row.date_created),  # type: ignore[arg-type]
            input_dids=list(row.input_dids),
            algo_did=row.algo_did,
            date_finished=_aware(row.date_finished),
            agreement_id=row.agreement_id,
            expire_timestamp=row.expire_timestamp,
            stopreq=StopReason(row.stopreq),
            exit_code=row.exit_code,
            oom_killed=bool(row.oom_killed),
            reason=row.reason,
            results=results[row.job_id],
        )
        for row in rows
    ]


# The status route's reads (JobStore.find), compiled once: an owner's jobs, or one of them,
# and their results (joined on the owner, so any number of jobs takes one statement).
_BY_OWNER = jobs.c.owner == sa.bindparam("owner")
#: What a Job shows (_assemble): never the private request, which would be decoded for nothing.
_SHOWN = [
    jobs.c[name]
    for name in (
        "job_id owner environment status date_created input_dids algo_did date_finished "
        "agreement_id expire_timestamp stopreq exit_code oom_killed reason"
    ).split()
]
_BY_OWNER_AND_ID = sa.and_(_BY_OWNER, jobs.c.job_id == sa.bindparam("job_id"))
_OWNER_JOBS = PreparedRead(
    sa.select(*_SHOWN).where(_BY_OWNER).order_by(jobs.c.date_created, jobs.c.job_id)
)
_OWNER_JOB = PreparedRead(sa.select(*_SHOWN).where(_BY_OWNER_AND_ID))
_RESULTS_OF = (
    sa.select(job_results)
    .join(jobs, jobs.c.job_id == job_results.c.job_id)
    .order_by(job_results.c.job_id, job_results.c.idx)
)
_OWNER_RESULTS = PreparedRead(_RESULTS_OF.where(_BY_OWNER))
_OWNER_JOB_RESULTS = PreparedRead(_RESULTS_OF.where(_BY_OWNER_AND_ID))


class JobStore:
    """Job rows, results and events on one SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"

    def create_tables(self) -> None:
        """Create missing tables, and add columns newer than an existing ``jobs`` table."""
        from operator_engine.escrow_ledger import EscrowLedger

        metadata.create_all(self.engine)
        add_missing_columns(self.engine, jobs)
        EscrowLedger(self.engine).create_tables()

    # -- reading -----------------------------------------------------------------------------

    def _job(self, conn: Connection, row: Any) -> Job:
        return self._jobs(conn, [row])[0]

    def _jobs(self, conn: Connection, rows: Sequence[Any]) -> list[Job]:
        """Jobs for ``rows``, their results read in one query."""
        ids = [row.job_id for row in rows]
        result_rows: list[Any] = []
        if ids:
            # one id: a plain equality (an expanding IN is re-rendered on every execution)
            which = (
                job_results.c.job_id == ids[0] if len(ids) == 1 else job_results.c.job_id.in_(ids)
            )
            result_rows = list(
                conn.execute(
                    sa.select(job_results)
                    .where(which)
                    .order_by(job_results.c.job_id, job_results.c.idx)
                )
            )
        return _assemble(rows, result_rows)

    def get(self, job_id: str) -> Job | None:
        with reading(self.engine) as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.job_id == job_id)).first()
            return None if row is None else self._job(conn, row)

    def row(self, job_id: str) -> Any | None:
        """The raw row (includes private columns: request, worker_id, container_id…)."""
        with reading(self.engine) as conn:
            return conn.execute(sa.select(jobs).where(jobs.c.job_id == job_id)).first()

    def request_of(self, job_id: str) -> JobRequest | None:
        row = self.row(job_id)
        return None if row is None or not row.request else request_from_json(row.request)

    def find(self, owner: str, *, job_id: str | None = None, did: str | None = None) -> list[Job]:
        """``owner``'s jobs (only ``job_id`` when given; only those that read ``did`` when
        given), oldest first. The status route's read: prepared statements, one transaction."""
        by_id = job_id is not None
        params = {"owner": owner.lower(), "job_id": job_id} if by_id else {"owner": owner.lower()}
        with raw_reading(self.engine) as cursor:
            dialect = self.engine.dialect
            rows = (_OWNER_JOB if by_id else _OWNER_JOBS).run(cursor, dialect, params)
            result_rows = (
                (_OWNER_JOB_RESULTS if by_id else _OWNER_RESULTS).run(cursor, dialect, params)
                if rows
                else []
            )
        found = _assemble(rows, result_rows)
        return [j for j in found if did is None or did in j.input_dids]

    def result_path(self, job_id: str, index: int) -> tuple[str, JobResult] | None:
        with reading(self.engine) as conn:
            r = conn.execute(
                sa.select(job_results).where(
                    job_results.c.job_id == job_id, job_results.c.idx == index
                )
            ).first()
        if r is None:
            return None
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
                paid = self._paid_job(conn, payments) if payments else None
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

    def job_paid_by(self, payments: Payments) -> Job | None:
        """The job ``payments`` started, when exactly these payments started it; None when
        none of them is consumed; :class:`OrderAlreadyUsed` for any other use."""
        with reading(self.engine) as conn:
            return self._paid_job(conn, payments)

    def _paid_job(self, conn: Connection, payments: Payments) -> Job | None:
        holders = order_holders(conn, payments.chain_id, payments.tx_ids)
        if not holders:
            return None
        job_ids = set(holders.values())
        if len(job_ids) == 1 and len(holders) == len(payments.tx_ids):
            (job_id,) = job_ids
            spent = conn.execute(
                sa.select(consumed_orders.c.tx_id).where(
                    consumed_orders.c.chain_id == payments.chain_id,
                    consumed_orders.c.job_id == job_id,
                )
            ).scalars()
            row = conn.execute(sa.select(jobs).where(jobs.c.job_id == job_id)).first()
            if set(spent) == set(payments.tx_ids) and row is not None:
                return self._job(conn, row)
        raise OrderAlreadyUsed([tx for tx in payments.tx_ids if tx in holders])

    def consumed(self, chain_id: int, tx_ids: Iterable[str]) -> set[str]:
        """Which of ``tx_ids`` (lowercased) already started a job on ``chain_id``."""
        with reading(self.engine) as conn:
            return set(order_holders(conn, chain_id, [tx.lower() for tx in tx_ids]))

    def by_agreement(self, agreement_id: str) -> Job | None:
        with reading(self.engine) as conn:
            row = conn.execute(sa.select(jobs).where(jobs.c.agreement_id == agreement_id)).first()
            return None if row is None else self._job(conn, row)

    def transition(
        self,
        job_id: str,
        from_: JobStatus | Iterable[JobStatus] | None,
        to: JobStatus,
        *,
        detail: str | None = None,
        **values: Any,
    ) -> JobStatus:
        """Move ``job_id`` to ``to`` if it is in ``from_`` (default: any allowed source).

        Returns the status it left. ``values`` are extra columns set in the same UPDATE
        (``stopreq``, ``exit_code``, ``oom_killed``, ``reason``, ``worker_id``…) besides the
        lifecycle's :func:`~operator_engine.lifecycle.stamps` (see :func:`write_status`).
        """
        allowed = sources_of(to)
        if from_ is not None:
            wanted = {from_} if isinstance(from_, JobStatus) else set(from_)
            allowed = allowed & frozenset(wanted)
        with self.engine.begin() as conn:
            current = conn.execute(sa.select(jobs.c.status).where(jobs.c.job_id == job_id)).scalar()
            if current is None or current not in {int(s) for s in allowed}:
                raise TransitionError(job_id, to, None if current is None else JobStatus(current))
            left = JobStatus(current)
            if not write_status(conn, job_id, left, to, at=utcnow(), detail=detail, **values):
                raise TransitionError(job_id, to, left)
        return left

    def update(self, job_id: str, **values: Any) -> bool:
        """Set non-status columns (never ``status``: that is :meth:`transition`'s)."""
        if "status" in values:
            raise ValueError("status changes go through transition()")
        with self.engine.begin() as conn:
            return bool(
                conn.execute(jobs.update().where(jobs.c.job_id == job_id).values(**values)).rowcount
            )

    def claim(
        self,
        worker_id: str,
        envs: Mapping[str, ComputeEnvironment],
        lease_seconds: float = 30.0,
    ) -> Job | None:
        """Atomically move the oldest queued job whose environment has room to STARTED, owned
        by ``worker_id`` for ``lease_seconds``. Room = fewer than ``maxJobs`` in-flight jobs in
        that environment (a job settling its payment at 71 no longer counts)."""
        in_flight = [int(s) for s in OCCUPYING]
        now = utcnow()
        with self.engine.begin() as conn:
            if not self.is_sqlite:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_CLAIM_LOCK_KEY)))
            busy: dict[str, int] = dict(
                conn.execute(
                    sa.select(jobs.c.environment, sa.func.count())
                    .where(jobs.c.status.in_(in_flight))
                    .group_by(jobs.c.environment)
                ).all()
            )
            open_envs = [
                env_id for env_id, env in envs.items() if busy.get(env_id, 0) < env.max_jobs
            ]
            if not open_envs:
                return None
            query = (
                sa.select(jobs.c.job_id)
                .where(jobs.c.status == int(JobStatus.WARMING_UP))
                .where(jobs.c.environment.in_(open_envs))
                .order_by(jobs.c.date_created, jobs.c.job_id)
                .limit(1)
            )
            if not self.is_sqlite:
                query = query.with_for_update(skip_locked=True)
            job_id = conn.execute(query).scalar()
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
            row = conn.execute(sa.select(jobs).where(jobs.c.job_id == job_id)).one()
            return self._job(conn, row)

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
        with self.engine.begin() as conn:
            conn.execute(
                jobs.update()
                .where(jobs.c.job_id == job_id, jobs.c.worker_id == worker_id)
                .values(worker_id=None, heartbeat_at=None, lease_expires_at=None)
            )

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

    def set_results(self, job_id: str, results: list[ResultRecord]) -> None:
        """Replace the job's results (idempotent: a resumed publish rewrites them)."""
        with self.engine.begin() as conn:
            conn.execute(job_results.delete().where(job_results.c.job_id == job_id))
            if results:
                conn.execute(
                    job_results.insert(),
                    [
                        {"job_id": job_id, "idx": i, **dataclasses.asdict(r)}
                        for i, r in enumerate(results)
                    ],
                )

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

    # -- environments managed through the API ------------------------------------------------

    def env_rows(self) -> list[Any]:
        with reading(self.engine) as conn:
            return list(conn.execute(sa.select(compute_envs).order_by(compute_envs.c.id)).all())

    def put_env(
        self,
        env_id: str,
        config: dict[str, Any],
        *,
        status: EnvState | str = EnvState.AVAILABLE,
        **values: Any,
    ) -> None:
        """Create or replace a store-managed environment (used by the admin API and tests);
        ``status`` must name an :class:`~operator_engine.lifecycle.EnvState` (``ValueError``)."""
        status = EnvState(status).value
        now = utcnow()
        with self.engine.begin() as conn:
            changed = conn.execute(
                compute_envs.update()
                .where(compute_envs.c.id == env_id)
                .values(config=config, status=status, last_updated=now, **values)
            ).rowcount
            if not changed:
                conn.execute(
                    compute_envs.insert().values(
                        id=env_id,
                        config=config,
                        status=status,
                        date_created=now,
                        last_updated=now,
                        name=values.pop("name", env_id),
                        **values,
                    )
                )

    def delete_env(self, env_id: str) -> bool:
        with self.engine.begin() as conn:
            return bool(
                conn.execute(compute_envs.delete().where(compute_envs.c.id == env_id)).rowcount
            )

    def primary_env(self) -> str | None:
        """The id an operator flagged primary (``POST …/primary``), if any."""
        with reading(self.engine) as conn:
            return conn.execute(
                sa.select(engine_settings.c.value).where(engine_settings.c.key == "primary_env")
            ).scalar()

    def set_primary_env(self, env_id: str) -> None:
        with self.engine.begin() as conn:
            changed = conn.execute(
                engine_settings.update()
                .where(engine_settings.c.key == "primary_env")
                .values(value=env_id)
            ).rowcount
            if not changed:
                conn.execute(engine_settings.insert().values(key="primary_env", value=env_id))

    def touch_env(self, env_id: str) -> None:
        """Record a job submitted to an admin-managed environment (no-op for file envs)."""
        with self.engine.begin() as conn:
            conn.execute(
                compute_envs.update().where(compute_envs.c.id == env_id).values(last_used=utcnow())
            )


# -- the one status write -------------------------------------------------------------------


def write_status(
    conn: Connection,
    job_id: str,
    from_: JobStatus | None,
    to: JobStatus,
    *,
    at: datetime,
    detail: str | None,
    **values: Any,
) -> bool:
    """Move ``job_id`` from ``from_`` to ``to`` inside the caller's transaction and record the
    move in ``job_events``: every status write (submit, claim, transition) is this one.

    ``from_`` None inserts a new job (``values`` are its other columns); otherwise the row is
    updated only while it is at ``from_`` (False, nothing written, when it is not). The
    lifecycle's :func:`~operator_engine.lifecycle.stamps` for ``to`` are set unless ``values``
    sets them. A move the lifecycle does not allow is a programming error (``ValueError``).
    """
    if not is_allowed(from_, to):
        raise ValueError(f"job {job_id}: {from_} -> {to} is not an allowed move")
    columns = {**stamps(to, at), **values, "status": int(to)}
    if from_ is None:
        conn.execute(jobs.insert().values(job_id=job_id, **columns))
    else:
        where = (jobs.c.job_id == job_id, jobs.c.status == int(from_))
        if conn.execute(jobs.update().where(*where).values(**columns)).rowcount != 1:
            return False
    conn.execute(
        job_events.insert().values(
            job_id=job_id,
            from_status=None if from_ is None else int(from_),
            to_status=int(to),
            at=at,
            detail=detail,
        )
    )
    return True


# -- consumed payments (docs/protocol.md §5) -------------------------------------------------------


def order_holders(conn: Connection, chain_id: int, tx_ids: Sequence[str]) -> dict[str, str]:
    """``{tx: job id}`` for those of ``tx_ids`` (lowercased) already consumed on ``chain_id``."""
    if not tx_ids:
        return {}
    rows = conn.execute(
        sa.select(consumed_orders.c.tx_id, consumed_orders.c.job_id).where(
            consumed_orders.c.chain_id == chain_id, consumed_orders.c.tx_id.in_(list(tx_ids))
        )
    ).all()
    return {r.tx_id: r.job_id for r in rows}


def consume_orders(conn: Connection, chain_id: int, tx_ids: Sequence[str], job_id: str) -> None:
    """Record ``tx_ids`` (lowercased) as spent by ``job_id``, inside the caller's transaction
    (the one creating the job). A tx already spent raises ``IntegrityError``."""
    now = utcnow()
    conn.execute(
        consumed_orders.insert(),
        [
            {"chain_id": chain_id, "tx_id": tx, "job_id": job_id, "consumed_at": now}
            for tx in tx_ids
        ],
    )

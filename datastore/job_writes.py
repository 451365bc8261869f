"""The job store's writes inside a caller's transaction: the one status write
(:func:`write_status`) and the payments that started jobs (:func:`consume_orders`)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Update
from sqlalchemy.engine import Connection

from datastore.job_records import OrderAlreadyUsed, ResultRecord, jobs_of
from datastore.schema import consumed_orders, job_events, job_results, jobs
from operator_engine.lifecycle import is_allowed, stamps
from operator_engine.models import Job, Payments, utcnow
from operator_engine.statuses import JobStatus


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
        params = {f"v_{name}": value for name, value in columns.items()}
        update = _guarded_update(tuple(sorted(columns)))
        if conn.execute(update, {**params, "job": job_id, "from": int(from_)}).rowcount != 1:
            return False
    conn.execute(
        _EVENT,
        {
            "job_id": job_id,
            "from_status": None if from_ is None else int(from_),
            "to_status": int(to),
            "at": at,
            "detail": detail,
        },
    )
    return True


#: one status move's event (a statement built once: SQLAlchemy caches its compiled form)
_EVENT = job_events.insert()


@functools.lru_cache(maxsize=64)
def _guarded_update(names: tuple[str, ...]) -> Update:
    """``UPDATE jobs SET <names> WHERE job_id = :job AND status = :from``, built once per set of
    columns (a statement built per call costs its construction and cache key every time)."""
    return (
        jobs.update()
        .where(jobs.c.job_id == sa.bindparam("job"), jobs.c.status == sa.bindparam("from"))
        .values({name: sa.bindparam(f"v_{name}", type_=jobs.c[name].type) for name in names})
    )


def replace_results(conn: Connection, job_id: str, results: Sequence[ResultRecord]) -> None:
    """Replace the results of ``job_id`` inside the caller's transaction."""
    conn.execute(job_results.delete().where(job_results.c.job_id == job_id))
    if results:
        conn.execute(
            job_results.insert(),
            [{"job_id": job_id, "idx": i, **dataclasses.asdict(r)} for i, r in enumerate(results)],
        )


# -- consumed payments (docs/protocol.md §5) -------------------------------------------------


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


def paid_job(conn: Connection, payments: Payments) -> Job | None:
    """The job ``payments`` started, when exactly these payments started it; None when none
    of them is consumed; :class:`OrderAlreadyUsed` for any other use."""
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
            return jobs_of(conn, [row])[0]
    raise OrderAlreadyUsed([tx for tx in payments.tx_ids if tx in holders])

"""The store's record of escrow locks (C2D v2 payments): one row per paid job.

The row is written *before* each chain transaction, so a process that dies between sending and
recording leaves a row that says what may be on chain; :mod:`operator_engine.settlement` looks
the lock up on chain and finishes the job's settlement from there. States::

    locking ──> locked ──> settling ──> claimed
       │           │           └──────> cancelled   (the lock expired before the claim)
       └─> failed  └─> cancelled                    (expired lock released by the sweep)

``failed``: ``createLock`` did not happen (refused, or its job never started), or the lock
vanished without a trace. Every state change is a conditional ``UPDATE … WHERE state IN (…)``;
uint256 values (lock id, amounts) are kept as decimal strings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from datastore.engine import reading
from datastore.schema import escrow_locks
from operator_engine.models import utcnow

STATES = ("locking", "locked", "settling", "claimed", "cancelled", "failed")
OPEN_STATES = ("locking", "locked", "settling")


class LedgerError(RuntimeError):
    """A ledger write found the row missing or in another state."""


@dataclass(frozen=True)
class LockRecord:
    """One row of ``escrow_locks`` (amounts as ints)."""

    job_id: str
    lock_id: int
    chain_id: int
    escrow: str
    payee: str
    payer: str
    token: str
    amount: int
    expiry_s: int
    expires_at: datetime
    rate_per_minute: str
    min_duration_s: int
    max_duration_s: int
    state: str
    lock_tx: str | None
    lock_block: int | None
    claim_amount: int | None
    claim_tx: str | None
    claimed_amount: int | None
    detail: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: Any) -> LockRecord:
        def opt(value: str | None) -> int | None:
            return None if value is None else int(value)

        return cls(
            job_id=row.job_id,
            lock_id=int(row.lock_id),
            chain_id=int(row.chain_id),
            escrow=row.escrow,
            payee=row.payee,
            payer=row.payer,
            token=row.token,
            amount=int(row.amount),
            expiry_s=int(row.expiry_s),
            expires_at=_aware(row.expires_at),
            rate_per_minute=row.rate_per_minute,
            min_duration_s=int(row.min_duration_s),
            max_duration_s=int(row.max_duration_s),
            state=row.state,
            lock_tx=row.lock_tx,
            lock_block=row.lock_block,
            claim_amount=opt(row.claim_amount),
            claim_tx=row.claim_tx,
            claimed_amount=opt(row.claimed_amount),
            detail=row.detail,
            created_at=_aware(row.created_at),
        )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class EscrowLedger:
    """The ``escrow_locks`` table on the store's SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, job_id: str) -> LockRecord | None:
        with reading(self.engine) as conn:
            row = conn.execute(
                sa.select(escrow_locks).where(escrow_locks.c.job_id == job_id)
            ).first()
        return None if row is None else LockRecord.of(row)

    def is_paid(self, job_id: str) -> bool:
        """True when ``job_id`` was paid through an escrow lock (any state)."""
        with reading(self.engine) as conn:
            return (
                conn.execute(
                    sa.select(escrow_locks.c.job_id).where(escrow_locks.c.job_id == job_id)
                ).first()
                is not None
            )

    def in_states(
        self, states: Iterable[str], *, expired_before: datetime | None = None
    ) -> list[LockRecord]:
        query = sa.select(escrow_locks).where(escrow_locks.c.state.in_(list(states)))
        if expired_before is not None:
            query = query.where(escrow_locks.c.expires_at < expired_before)
        with reading(self.engine) as conn:
            rows = conn.execute(query.order_by(escrow_locks.c.created_at)).all()
        return [LockRecord.of(r) for r in rows]

    def record_lock(
        self,
        *,
        job_id: str,
        lock_id: int,
        chain_id: int,
        escrow: str,
        payee: str,
        payer: str,
        token: str,
        amount: int,
        expiry_s: int,
        rate_per_minute: str,
        min_duration_s: int,
        max_duration_s: int,
    ) -> None:
        """Insert the row in state ``locking`` (before ``createLock`` is sent); raises
        :class:`LedgerError` when the job already has one."""
        now = utcnow()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    escrow_locks.insert().values(
                        job_id=job_id,
                        lock_id=str(lock_id),
                        chain_id=chain_id,
                        escrow=escrow,
                        payee=payee,
                        payer=payer,
                        token=token,
                        amount=str(amount),
                        expiry_s=expiry_s,
                        expires_at=now + timedelta(seconds=expiry_s),
                        rate_per_minute=rate_per_minute,
                        min_duration_s=min_duration_s,
                        max_duration_s=max_duration_s,
                        state="locking",
                        created_at=now,
                        updated_at=now,
                    )
                )
        except sa.exc.IntegrityError:
            raise LedgerError(f"job {job_id} already has an escrow lock record") from None

    def move(self, job_id: str, from_: Iterable[str], to: str, **values: Any) -> bool:
        """Set ``state`` to ``to`` (and ``values``) if the row is in ``from_``; True if moved."""
        if to not in STATES:
            raise ValueError(f"unknown ledger state {to!r}")
        for key in ("claim_amount", "claimed_amount"):
            if values.get(key) is not None:
                values[key] = str(values[key])
        with self.engine.begin() as conn:
            return bool(
                conn.execute(
                    escrow_locks.update()
                    .where(escrow_locks.c.job_id == job_id)
                    .where(escrow_locks.c.state.in_(list(from_)))
                    .values(state=to, updated_at=utcnow(), **values)
                ).rowcount
            )

    def set_claim_tx(self, job_id: str, tx_hash: str | None) -> None:
        """Record the hash of a signed claim transaction (before it is broadcast)."""
        with self.engine.begin() as conn:
            changed = conn.execute(
                escrow_locks.update()
                .where(escrow_locks.c.job_id == job_id, escrow_locks.c.state == "settling")
                .values(claim_tx=tx_hash, updated_at=utcnow())
            ).rowcount
        if not changed:
            raise LedgerError(f"job {job_id} is not settling: claim not recorded")

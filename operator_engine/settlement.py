"""Escrow payments of paid (C2D v2) jobs, from lock to claim, crash-safe.

The provider (``/node`` compute start) and the engine share one :class:`Settlement`, built on
the store's SQLAlchemy engine and the payee's :class:`~contracts_abi.escrow.EscrowChain`:

Provider, for a paid start (the job must not start before the lock is mined)::

    job_id = new_job_id()
    settlement.lock(job_id, token=…, payer=…, amount=quote, expiry_s=…,
                    rate_per_minute=billing.rate_per_minute(prices, resources),
                    min_duration_s=env_min, max_duration_s=job_max)   # raises EscrowError
    try:
        engine.submit(JobRequest(job_id=job_id, …))
    except Exception:
        settlement.release(job_id, "job not started")                  # gives it all back
        raise

Status views may add ``settlement.payment_view(job_id)`` as the job's ``payment``.

Engine: a paid job that published its results enters 71 ("Job settling") and
:meth:`Settlement.settle` claims the actual cost (:mod:`operator_engine.billing`, from the time
the job spent at 40 per its ``job_events``, capped at the lock) before it reaches 70; a paid
job that ended otherwise is settled the same way right after (nothing is charged when the
algorithm never ran). :meth:`Settlement.sweep` (run by the engine's sweep) finishes
settlements a dead worker or a chain outage left open, and cancels expired locks.

Crash safety: the ledger row (:mod:`datastore.escrow_ledger`) is written before each
transaction and the claim's hash is recorded after signing, before broadcasting. Re-running a
settlement first reads that transaction's receipt, then checks the lock is still on chain
before sending again (:func:`contracts_abi.escrow.claim` sends nothing for a lock that is gone,
and the contract deletes claimed locks), and when the lock is gone it reads how it ended from
the ``Claimed``/``Canceled`` events. A lock is therefore claimed at most once, and a settlement
is never forgotten while its row is open.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from fractions import Fraction

import requests
from sqlalchemy import Engine
from web3 import Web3

from contracts_abi import escrow
from contracts_abi.escrow import ClaimResult, EscrowChain, EscrowError, PaymentError
from datastore.escrow_ledger import OPEN_STATES, EscrowLedger, LedgerError, LockRecord
from datastore.jobs import JobStore
from operator_engine.billing import cost_at_rate
from operator_engine.models import utcnow
from operator_engine.statuses import JobStatus

log = logging.getLogger(__name__)

#: How long before its lock expires a paid job's claim must be possible: a job starts only
#: if its lock outlives its longest run by this much.
CLAIM_MARGIN = timedelta(seconds=60)

#: A ``locking`` row older than this whose lock is not on chain failed for good (its
#: ``createLock`` had at most a minute to be mined).
LOCKING_GRACE = timedelta(minutes=5)


def new_job_id() -> str:
    """A fresh job id (the form ``JobStore.insert`` uses), for locking before submitting."""
    return uuid.uuid4().hex


def run_seconds(db: Engine, job_id: str) -> float | None:
    """Seconds the job's algorithm ran (from entering 40 to leaving it, per ``job_events``);
    None when it never ran or its events are gone."""
    running = int(JobStatus.RUNNING)
    events = JobStore(db).events_around(job_id, running)
    started = next((at for _from, to, at in events if to == running), None)
    if started is None:
        return None
    ended = next((at for from_, _to, at in events if from_ == running), None)
    if ended is None:
        return None
    return max(float((ended - started).total_seconds()), 0.0)


def claim_amount(record: LockRecord, ran_s: float | None) -> int:
    """What to claim: the cost of ``ran_s`` seconds at the record's rate, clamped to its
    durations and capped at the lock; 0 when the algorithm never ran."""
    if ran_s is None:
        return 0
    cost = cost_at_rate(
        Fraction(record.rate_per_minute),
        ran_s,
        min_duration_s=record.min_duration_s,
        max_duration_s=max(record.max_duration_s, record.min_duration_s),
    )
    return min(cost, record.amount)


class Settlement:
    """Locks, claims and the sweep over one store and one payee chain handle.

    ``chain`` is an :class:`EscrowChain` or a function building one (called once, on first
    use; an :class:`EscrowError` it raises is re-raised at each use until it succeeds).
    """

    def __init__(self, db: Engine, chain: EscrowChain | Callable[[], EscrowChain]) -> None:
        self.db = db
        self.ledger = EscrowLedger(db)
        self._chain = chain if isinstance(chain, EscrowChain) else None
        self._factory = None if isinstance(chain, EscrowChain) else chain
        self._guard = threading.Lock()

    def chain(self) -> EscrowChain:
        with self._guard:
            if self._chain is None:
                assert self._factory is not None
                self._chain = self._factory()
            return self._chain

    # -- provider side -----------------------------------------------------------------------

    def lock(
        self,
        job_id: str,
        *,
        token: str,
        payer: str,
        amount: int,
        expiry_s: int,
        rate_per_minute: Fraction | int | str,
        min_duration_s: int,
        max_duration_s: int,
    ) -> str:
        """Check the payment, record it, send ``createLock`` and wait until it is mined;
        return its tx hash. Raises :class:`PaymentError` (nothing locked, row ``failed``),
        :class:`~contracts_abi.escrow.EscrowUnavailable` or
        :class:`~contracts_abi.escrow.EscrowTxError` (row left ``locking``: the sweep finds
        out whether the lock exists and releases it)."""
        chain = self.chain()
        escrow.check_payment(chain, payer, token, amount, expiry_s)
        try:
            chain_id = int(chain.w3.eth.chain_id)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise escrow.EscrowUnavailable("chain_unavailable", "chain RPC unreachable") from exc
        try:
            self.ledger.record_lock(
                job_id=job_id,
                lock_id=escrow.lock_id_for(job_id),
                chain_id=chain_id,
                escrow=chain.address,
                payee=chain.payee_address,
                payer=Web3.to_checksum_address(payer),
                token=Web3.to_checksum_address(token),
                amount=amount,
                expiry_s=expiry_s,
                rate_per_minute=str(Fraction(rate_per_minute)),
                min_duration_s=min_duration_s,
                max_duration_s=max_duration_s,
            )
        except LedgerError as exc:
            raise PaymentError("lock_exists", str(exc)) from exc
        try:
            tx_hash = escrow.create_lock(chain, job_id, token, payer, amount, expiry_s)
        except PaymentError as exc:
            self.ledger.move(job_id, ["locking"], "failed", detail=f"{exc.code}: {exc.message}")
            raise
        receipt = escrow.receipt_of(chain, tx_hash)
        block = int(receipt["blockNumber"]) if receipt is not None else None
        self.ledger.move(job_id, ["locking"], "locked", lock_tx=tx_hash, lock_block=block)
        return tx_hash

    def release(self, job_id: str, reason: str) -> ClaimResult | None:
        """Give a job's whole lock back now (a claim of 0): for a job that will never run.
        Returns None when the job has no open lock."""
        record = self.ledger.get(job_id)
        if record is None or record.state not in OPEN_STATES:
            return None
        if record.state == "locking":
            self.ledger.move(job_id, ["locking"], "locked", detail=reason)
        self.ledger.move(job_id, ["locked"], "settling", claim_amount=0, detail=reason)
        try:
            return self._claim(self._open(job_id))
        except LedgerError:
            return None  # settled meanwhile by someone else

    # -- engine side -------------------------------------------------------------------------

    def is_paid(self, job_id: str) -> bool:
        return self.ledger.is_paid(job_id)

    def start_refusal(self, job_id: str) -> str | None:
        """Why ``job_id`` must not start now, or None (unpaid, or its lock is held and outlives
        its longest run plus :data:`CLAIM_MARGIN`). A paid job never runs unpaid: its lock must
        be mined (``locked``) and must not expire before its claim."""
        record = self.ledger.get(job_id)
        if record is None:
            return None
        if record.state != "locked":
            return f"its escrow payment is not held (lock {record.state}): not started"
        latest_end = utcnow() + timedelta(seconds=record.max_duration_s) + CLAIM_MARGIN
        if record.expires_at < latest_end:
            return (
                "its escrow lock expires before the job could end and be claimed "
                "(it waited too long in the queue): not started, the lock is released"
            )
        return None

    def payment_view(self, job_id: str) -> dict[str, object] | None:
        """The job's ``payment`` object in Ocean Node's shape (None for an unpaid job):
        ``chainId``, ``token``, ``lockTx``, ``claimTx`` (None unless claimed), ``cost`` (the
        claimed base units as a decimal string, "0" for a cancelled lock, None while open)
        and tidewater's ``state`` (the ledger state)."""
        record = self.ledger.get(job_id)
        if record is None:
            return None
        settled = record.state in ("claimed", "cancelled")
        return {
            "chainId": record.chain_id,
            "token": record.token,
            "lockTx": record.lock_tx,
            "claimTx": record.claim_tx if record.state == "claimed" else None,
            "cost": str(record.claimed_amount or 0) if settled else None,
            "state": record.state,
        }

    def settle(self, job_id: str) -> bool:
        """Claim the job's actual cost; True when its settlement is final (or it has none),
        False when the chain is unavailable (retry later). Idempotent and crash-safe."""
        record = self.ledger.get(job_id)
        if record is None or record.state not in OPEN_STATES:
            return True
        try:
            result = self._settle(record)
        except LedgerError:
            # another settler (worker, sweep, delete) moved the row first: it is theirs
            now = self.ledger.get(job_id)
            return now is None or now.state not in OPEN_STATES
        except EscrowError as exc:
            if isinstance(exc, PaymentError):  # the claim itself is malformed: never retried
                self.ledger.move(job_id, OPEN_STATES, "failed", detail=exc.message)
                log.error("job %s: settlement failed: %s", job_id, exc.message)
                return True
            log.warning("job %s: settlement pending (%s)", job_id, exc.message)
            return False
        log.info("job %s: escrow %s %s", job_id, result.outcome, result.amount)
        return True

    def _settle(self, record: LockRecord) -> ClaimResult:
        job_id = record.job_id
        if record.state == "locking":
            chain = self.chain()
            lock = escrow.find_lock(chain, job_id, record.token, record.payer)
            if lock is None:
                if utcnow() - record.created_at < LOCKING_GRACE:
                    raise escrow.EscrowUnavailable("chain_unavailable", "lock not mined yet")
                self.ledger.move(job_id, ["locking"], "failed", detail="no lock on chain")
                return ClaimResult("absent")
            self.ledger.move(job_id, ["locking"], "locked")
        if record.state in ("locking", "locked"):
            amount = claim_amount(record, run_seconds(self.db, job_id))
            self.ledger.move(job_id, ["locked"], "settling", claim_amount=amount)
        return self._claim(self._open(job_id))

    def _open(self, job_id: str) -> LockRecord:
        record = self.ledger.get(job_id)
        if record is None or record.state != "settling":
            raise LedgerError(f"job {job_id} is no longer settling")  # another settler's now
        return record

    def _claim(self, record: LockRecord) -> ClaimResult:
        chain = self.chain()
        job_id = record.job_id
        if record.claim_tx:
            receipt = escrow.receipt_of(chain, record.claim_tx)
            if receipt is not None and receipt["status"] == 1:
                done = escrow.outcome_of(chain, receipt, job_id)
                if done.outcome != "absent":
                    return self._finish(record, done)
        result = escrow.claim(
            chain,
            job_id,
            record.token,
            record.payer,
            record.claim_amount or 0,
            self._proof(job_id),
            on_signed=lambda tx_hash: self.ledger.set_claim_tx(job_id, tx_hash),
        )
        if result.outcome == "absent":
            result = escrow.settlement_event(chain, job_id, record.payer, record.lock_block or 0)
        return self._finish(record, result)

    def _finish(self, record: LockRecord, result: ClaimResult) -> ClaimResult:
        if result.outcome == "claimed":
            self.ledger.move(
                record.job_id,
                ["settling"],
                "claimed",
                claimed_amount=result.amount,
                claim_tx=result.tx_hash,
            )
        elif result.outcome == "cancelled":
            self.ledger.move(
                record.job_id,
                OPEN_STATES,
                "cancelled",
                claimed_amount=0,
                detail="the lock expired before the claim: returned to the payer",
            )
        else:
            self.ledger.move(
                record.job_id,
                OPEN_STATES,
                "failed",
                detail="the lock is not on chain and no Claimed/Canceled event was found",
            )
        return result

    def _proof(self, job_id: str) -> bytes:
        """The public job JSON (what status returns), canonical, as the claim's proof."""
        job = JobStore(self.db).get(job_id)
        body = job.to_ocean() if job is not None else {"jobId": job_id}
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    # -- the sweep ---------------------------------------------------------------------------

    def sweep(self, job_status: Callable[[str], JobStatus | None]) -> int:
        """Cancel expired locks and record how they ended, then settle the open rows whose
        job has ended: terminal, or gone for longer than :data:`LOCKING_GRACE` (a provider
        that locked and never submitted: the lock is released whole). Jobs still live settle
        in their worker (71). Returns how many settlements became final; chain trouble only
        postpones (logged, never raised)."""
        done = 0
        try:
            expired = self.ledger.in_states(OPEN_STATES, expired_before=utcnow())
            if expired:
                escrow.cancel_expired_locks(
                    self.chain(), [(r.job_id, r.token, r.payer) for r in expired]
                )
            expired_ids = {r.job_id for r in expired}
            for record in self.ledger.in_states(OPEN_STATES):
                status = job_status(record.job_id)
                if status is not None and not status.is_terminal:
                    continue  # its worker settles it at 71
                young = utcnow() - record.created_at < LOCKING_GRACE
                if status is None and young and record.job_id not in expired_ids:
                    continue  # a provider may be between locking and submitting
                done += int(self.settle(record.job_id))
        except EscrowError as exc:
            log.warning("escrow sweep postponed: %s", exc.message)
        return done

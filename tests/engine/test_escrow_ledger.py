"""The escrow ledger (one row per paid job) on SQLite and PostgreSQL, and the claim amount
derived from a job's events."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from datastore.engine import make_engine
from datastore.escrow_ledger import EscrowLedger, LedgerError
from datastore.jobs import JobStore
from datastore.migrate import upgrade
from operator_engine.models import utcnow
from operator_engine.settlement import claim_amount, run_seconds
from operator_engine.statuses import JobStatus
from tests.engine.helpers import request

UINT_MAX = 2**256 - 1
PAYER = "0x" + "1" * 40
TOKEN = "0x" + "2" * 40


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[JobStore, Any]]:
    url = (
        f"sqlite:///{tmp_path / 'store.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    engine = make_engine(url)
    store = JobStore(engine)
    upgrade(store.engine)
    yield store, EscrowLedger(engine)
    engine.dispose()


def _record(ledger: EscrowLedger, job_id: str, **over: Any) -> None:
    values: dict[str, Any] = dict(
        job_id=job_id,
        lock_id=UINT_MAX,
        chain_id=8996,
        escrow="0x" + "3" * 40,
        payee="0x" + "4" * 40,
        payer=PAYER,
        token=TOKEN,
        amount=UINT_MAX - 1,
        expiry_s=3600,
        rate_per_minute="1/3",
        min_duration_s=60,
        max_duration_s=600,
    )
    values.update(over)
    ledger.record_lock(**values)


def test_a_lock_walks_its_states_once(stores: tuple[JobStore, EscrowLedger]) -> None:
    _store, ledger = stores
    _record(ledger, "j1")
    with pytest.raises(LedgerError):
        _record(ledger, "j1")  # one lock record per job
    record = ledger.get("j1")
    assert record is not None and record.state == "locking"
    assert record.lock_id == UINT_MAX and record.amount == UINT_MAX - 1  # uint256 round-trip
    assert ledger.is_paid("j1") and not ledger.is_paid("j2")
    assert ledger.move("j1", ["locking"], "locked", lock_tx="0xaa", lock_block=5)
    assert not ledger.move("j1", ["locking"], "failed")  # not in that state any more
    with pytest.raises(LedgerError):
        ledger.set_claim_tx("j1", "0xbb")  # only a settling row records a claim
    assert ledger.move("j1", ["locked"], "settling", claim_amount=UINT_MAX - 2)
    assert not ledger.move("j1", ["locked"], "settling", claim_amount=1)  # the first decides
    ledger.set_claim_tx("j1", "0xbb")
    assert ledger.move("j1", ["settling"], "claimed", claimed_amount=UINT_MAX - 2)
    final = ledger.get("j1")
    assert final is not None and final.state == "claimed"
    assert (final.claim_amount, final.claimed_amount, final.claim_tx) == (
        UINT_MAX - 2,
        UINT_MAX - 2,
        "0xbb",
    )
    with pytest.raises(ValueError):
        ledger.move("j1", ["claimed"], "vanished")


def test_open_and_expired_rows_are_listed(stores: tuple[JobStore, EscrowLedger]) -> None:
    _store, ledger = stores
    _record(ledger, "short", expiry_s=1)
    _record(ledger, "long", expiry_s=3600)
    _record(ledger, "done")
    ledger.move("done", ["locking"], "failed")
    assert [r.job_id for r in ledger.in_states(["locking"])] == ["short", "long"]
    later = utcnow() + timedelta(seconds=5)
    assert [r.job_id for r in ledger.in_states(["locking"], expired_before=later)] == ["short"]


def test_claim_amount_follows_the_run_in_the_events(stores: tuple[JobStore, EscrowLedger]) -> None:
    store, ledger = stores
    store.insert(replace(request(), job_id="ran"), algo_did="raw")
    store.insert(replace(request(), job_id="queued"), algo_did="raw")
    for status in (10, 20, 30, 40, 41):
        store.transition("ran", None, JobStatus(status))
    store.transition("queued", None, JobStatus.STOPPED)
    ran = run_seconds(store.engine, "ran")
    assert ran is not None and 0 <= ran < 60
    assert run_seconds(store.engine, "queued") is None
    assert run_seconds(store.engine, "unknown") is None

    _record(ledger, "ran", rate_per_minute="10", amount=10**6, min_duration_s=120)
    record = ledger.get("ran")
    assert record is not None
    assert claim_amount(record, ran) == 20  # the minimum (2 minutes) applies to a run
    assert claim_amount(record, None) == 0  # never ran: nothing charged
    assert claim_amount(record, 10**9) == 100  # clamped to the maximum (10 minutes)
    assert claim_amount(replace(record, amount=7), 10**9) == 7  # never above the lock

"""Paid jobs settle on the real Escrow (real ganache, ocean-contracts 3.1.0): 60 -> 71 -> 70
with the actual cost claimed, failures and stops charged for what ran, chain outages and
worker crashes that never claim twice or lose a settlement.

The engine runs its jobs with the FakeBackend here (containers are not what is tested); the
chain, the contract and the store are real.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from contracts_abi import escrow
from contracts_abi.devchain import free_port
from contracts_abi.escrow import EscrowChain
from datastore.engine import make_engine
from datastore.jobs import JobStore
from datastore.migrate import upgrade
from datastore.schema import escrow_locks
from operator_engine.api import Engine
from operator_engine.backends.base import ContainerSpec
from operator_engine.backends.fake import FakeBackend
from operator_engine.models import JobRequest, utcnow
from operator_engine.settlement import LOCKING_GRACE, Settlement, new_job_id, run_seconds
from operator_engine.statuses import JobStatus
from operator_engine.worker import Worker
from tests.engine.conftest import FileServer
from tests.engine.helpers import env, request, settings_for
from tests.fixtures.escrow import Payer
from tidewater.engine_config import engine_config

pytestmark = pytest.mark.integration

ONE = 10**18
RATE = ONE // 10  # base units per minute
MIN_S, MAX_S = 120, 600
QUOTE = RATE * MAX_S // 60  # what initializeCompute would quote for MAX_S
PAID_LADDER = [1, 10, 20, 30, 40, 50, 60, 71, 70]


def _failing(spec: ContainerSpec, dirs: dict[str, Path], killed: threading.Event) -> Any:
    return 1, False, b"boom\n"


@pytest.fixture
def paid_request(file_server: FileServer) -> Callable[[str], JobRequest]:
    """A job request of ``job_id`` whose dataset the local file server serves."""
    file_server.files["/d.csv"] = b"a,b\n1,2\n"

    def make(job_id: str) -> JobRequest:
        files = [{"type": "url", "url": file_server.url("/d.csv")}]
        return replace(request(files=files), job_id=job_id)

    return make


@pytest.fixture
def payer(payee_chain: EscrowChain, new_payer: Callable[..., Payer]) -> Payer:
    return new_payer(deposit=10 * ONE, payee=payee_chain.payee_address)


@pytest.fixture
def make_engine_for(tmp_path: Path, payee_chain: EscrowChain) -> Iterator[Callable[..., Engine]]:
    """Engines on one SQLite store whose settlement claims as the test's payee."""
    made: list[Engine] = []

    def build(runner: FakeBackend | None = None, chain: Any = payee_chain) -> Engine:
        settings = settings_for(tmp_path, [env()], allow_non_public_ip=True)
        db = make_engine(settings.db_url)
        upgrade(db)
        config = engine_config(settings)
        engine = Engine(config, db, runner or FakeBackend(), settlement=Settlement(db, chain))
        made.append(engine)
        return engine

    yield build
    for engine in made:
        engine.shutdown()


def _lock(engine: Engine, payer: Payer, token: str, job_id: str | None = None) -> str:
    job_id = job_id or new_job_id()
    assert engine.settlement is not None
    engine.settlement.lock(
        job_id,
        token=token,
        payer=payer.address,
        amount=QUOTE,
        expiry_s=MAX_S + 600,
        rate_per_minute=RATE,
        min_duration_s=MIN_S,
        max_duration_s=MAX_S,
    )
    return job_id


def _total(chain: EscrowChain, payer: Payer, token: str) -> int:
    funds = escrow.get_funds(chain, payer.address, token)
    return funds.available + funds.locked


def test_paid_job_settles_at_71_and_claims_the_actual_cost(
    make_engine_for: Callable[..., Engine],
    payee_chain: EscrowChain,
    payer: Payer,
    ocean_token: str,
    paid_request: Callable[[str], JobRequest],
) -> None:
    engine = make_engine_for()
    before = _total(payee_chain, payer, ocean_token)
    job_id = _lock(engine, payer, ocean_token)
    assert escrow.get_funds(payee_chain, payer.address, ocean_token).locked == QUOTE
    job = engine.submit(paid_request(job_id))
    assert job.job_id == job_id
    engine.run_until_idle()
    done = engine.get(job_id)
    assert done is not None and done.status is JobStatus.FINISHED
    assert [to for _f, to, _d in engine.store.events(job_id)] == PAID_LADDER
    record = engine.settlement.ledger.get(job_id)  # type: ignore[union-attr]
    assert record is not None and record.state == "claimed" and record.claim_tx
    # the run took well under the minimum: the minimum (2 minutes) is charged
    assert record.claimed_amount == RATE * MIN_S // 60
    assert before - _total(payee_chain, payer, ocean_token) == record.claimed_amount
    assert escrow.get_funds(payee_chain, payer.address, ocean_token).locked == 0
    assert escrow.find_lock(payee_chain, job_id, ocean_token, payer.address) is None
    claimed = escrow.settlement_event(payee_chain, job_id, payer.address, 0)
    assert claimed.outcome == "claimed" and claimed.tx_hash == record.claim_tx
    assert engine.settlement.payment_view(job_id) == {
        "chainId": 8996,
        "token": ocean_token,
        "lockTx": record.lock_tx,
        "claimTx": record.claim_tx,
        "cost": str(RATE * MIN_S // 60),
        "state": "claimed",
    }
    assert engine.settlement.payment_view("unpaid") is None


def test_failed_run_is_charged_and_queued_stop_is_free(
    make_engine_for: Callable[..., Engine],
    payee_chain: EscrowChain,
    payer: Payer,
    ocean_token: str,
    paid_request: Callable[[str], JobRequest],
) -> None:
    engine = make_engine_for(FakeBackend(_failing))
    before = _total(payee_chain, payer, ocean_token)
    ran = _lock(engine, payer, ocean_token)
    engine.submit(paid_request(ran))
    engine.run_until_idle()
    assert engine.get(ran).status is JobStatus.RUN_FAILED  # type: ignore[union-attr]

    never = _lock(engine, payer, ocean_token)
    engine.submit(paid_request(never))
    engine.stop(never)
    engine.run_until_idle()  # its sweep settles the stopped job
    ledger = engine.settlement.ledger  # type: ignore[union-attr]
    assert ledger.get(ran).claimed_amount == RATE * MIN_S // 60  # type: ignore[union-attr]
    assert ledger.get(never).state == "claimed"  # type: ignore[union-attr]
    assert ledger.get(never).claimed_amount == 0  # type: ignore[union-attr]
    assert before - _total(payee_chain, payer, ocean_token) == RATE * MIN_S // 60
    assert escrow.get_funds(payee_chain, payer.address, ocean_token).locked == 0


def test_chain_outage_leaves_the_job_at_71_until_the_sweep_settles_it(
    make_engine_for: Callable[..., Engine],
    w3: Web3,
    payee_chain: EscrowChain,
    payer: Payer,
    ocean_token: str,
    paid_request: Callable[[str], JobRequest],
) -> None:
    engine = make_engine_for()
    job_id = _lock(engine, payer, ocean_token)
    settlement = engine.settlement
    assert settlement is not None
    dead = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{free_port()}", request_kwargs={"timeout": 2}))
    settlement._chain = EscrowChain(dead, payee_chain.address, payee_chain.payee)
    engine.submit(paid_request(job_id))
    w = Worker(engine.services, 7)
    assert w.step()
    row = engine.store.row(job_id)
    assert row.status == int(JobStatus.SETTLING) and row.worker_id is None  # type: ignore[union-attr]
    assert engine.get(job_id).results  # type: ignore[union-attr]  # results already published
    assert settlement.ledger.get(job_id).state == "settling"  # type: ignore[union-attr]
    assert escrow.get_funds(payee_chain, payer.address, ocean_token).locked == QUOTE
    # a settling job can no longer be stopped
    assert engine.stop(job_id).status is JobStatus.SETTLING

    settlement._chain = payee_chain  # the chain is back
    w.sweep()
    assert engine.get(job_id).status is JobStatus.FINISHED  # type: ignore[union-attr]
    assert settlement.ledger.get(job_id).state == "claimed"  # type: ignore[union-attr]
    assert escrow.get_funds(payee_chain, payer.address, ocean_token).locked == 0
    w.retire()


class _Crash(Exception):
    pass


def _ran(store: JobStore, job_id: str) -> None:
    """A job of ``job_id`` that ran its algorithm and ended (its events carry the run time)."""
    store.insert(replace(request(), job_id=job_id), algo_did="raw")
    for status in (10, 20, 30, 40, 50, 60, 70):
        store.transition(job_id, None, JobStatus(status))
    assert run_seconds(store.engine, job_id) is not None


@pytest.mark.parametrize("when", ["before-broadcast", "after-mined", "hash-lost"])
def test_a_crash_mid_claim_never_claims_twice_nor_loses_the_claim(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    payee_chain: EscrowChain,
    payer: Payer,
    ocean_token: str,
    when: str,
) -> None:
    db = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    store = JobStore(db)
    upgrade(store.engine)
    settlement = Settlement(db, payee_chain)
    job_id = new_job_id()
    settlement.lock(
        job_id,
        token=ocean_token,
        payer=payer.address,
        amount=QUOTE,
        expiry_s=3600,
        rate_per_minute=RATE,
        min_duration_s=MIN_S,
        max_duration_s=MAX_S,
    )
    _ran(store, job_id)
    before = _total(payee_chain, payer, ocean_token)
    ledger = settlement.ledger
    real_set, real_move = ledger.set_claim_tx, ledger.move

    if when == "before-broadcast":  # the hash is recorded, then the worker dies

        def set_claim_tx(job: str, tx_hash: str | None) -> None:
            real_set(job, tx_hash)
            raise _Crash

        monkeypatch.setattr(ledger, "set_claim_tx", set_claim_tx)
    else:  # the claim is mined, the worker dies before recording its outcome
        if when == "hash-lost":
            monkeypatch.setattr(ledger, "set_claim_tx", lambda job, tx_hash: None)

        def move(job: str, from_: Any, to: str, **values: Any) -> bool:
            if to == "claimed":
                raise _Crash
            return real_move(job, from_, to, **values)

        monkeypatch.setattr(ledger, "move", move)

    with pytest.raises(_Crash):
        settlement.settle(job_id)
    monkeypatch.undo()
    assert ledger.get(job_id).state == "settling"  # type: ignore[union-attr]

    # a new process (fresh Settlement, same store) picks the settlement up
    again = Settlement(db, payee_chain)
    assert again.settle(job_id) is True
    assert again.settle(job_id) is True  # and repeating it changes nothing
    record = again.ledger.get(job_id)
    assert record is not None and record.state == "claimed"
    assert record.claimed_amount == RATE * MIN_S // 60
    assert before - _total(payee_chain, payer, ocean_token) == record.claimed_amount
    assert escrow.get_funds(payee_chain, payer.address, ocean_token).locked == 0


def _age(db: Any, job_id: str, by: timedelta) -> None:
    """Make the ledger row of ``job_id`` look ``by`` older (a provider that died long ago)."""
    with db.begin() as conn:
        conn.execute(
            escrow_locks.update()
            .where(escrow_locks.c.job_id == job_id)
            .values(created_at=utcnow() - by)
        )


def test_the_sweep_releases_locks_of_jobs_that_never_came(
    tmp_path: Path, payee_chain: EscrowChain, payer: Payer, ocean_token: str
) -> None:
    db = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    store = JobStore(db)
    upgrade(store.engine)
    settlement = Settlement(db, payee_chain)
    status: Callable[[str], JobStatus | None] = lambda job_id: None  # noqa: E731
    before = _total(payee_chain, payer, ocean_token)

    # locked, then the provider died before submitting: released whole once the grace passed
    orphan = new_job_id()
    settlement.lock(
        orphan,
        token=ocean_token,
        payer=payer.address,
        amount=QUOTE,
        expiry_s=3600,
        rate_per_minute=RATE,
        min_duration_s=MIN_S,
        max_duration_s=MAX_S,
    )
    assert settlement.sweep(status) == 0  # too young: it may still be submitted
    _age(db, orphan, LOCKING_GRACE)
    # recorded, then the provider died before createLock was sent
    unsent = new_job_id()
    settlement.ledger.record_lock(
        job_id=unsent,
        lock_id=escrow.lock_id_for(unsent),
        chain_id=8996,
        escrow=payee_chain.address,
        payee=payee_chain.payee_address,
        payer=payer.address,
        token=ocean_token,
        amount=QUOTE,
        expiry_s=3600,
        rate_per_minute=str(RATE),
        min_duration_s=MIN_S,
        max_duration_s=MAX_S,
    )
    _age(db, unsent, LOCKING_GRACE)
    assert settlement.sweep(status) == 2
    assert settlement.ledger.get(orphan).state == "claimed"  # type: ignore[union-attr]
    assert settlement.ledger.get(orphan).claimed_amount == 0  # type: ignore[union-attr]
    assert settlement.ledger.get(unsent).state == "failed"  # type: ignore[union-attr]
    assert _total(payee_chain, payer, ocean_token) == before
    assert escrow.get_funds(payee_chain, payer.address, ocean_token).locked == 0


def test_the_sweep_cancels_expired_locks(
    tmp_path: Path, w3: Web3, payee_chain: EscrowChain, payer: Payer, ocean_token: str
) -> None:
    db = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(db)
    settlement = Settlement(db, payee_chain)
    job_id = new_job_id()
    settlement.lock(
        job_id,
        token=ocean_token,
        payer=payer.address,
        amount=QUOTE,
        expiry_s=1,
        rate_per_minute=RATE,
        min_duration_s=MIN_S,
        max_duration_s=MAX_S,
    )
    lock = escrow.find_lock(payee_chain, job_id, ocean_token, payer.address)
    assert lock is not None
    deadline = time.monotonic() + 60
    while int(w3.eth.get_block("latest")["timestamp"]) <= lock.expiry or (
        settlement.ledger.get(job_id).expires_at > utcnow()  # type: ignore[union-attr]
    ):
        assert time.monotonic() < deadline
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        time.sleep(0.2)
    assert settlement.sweep(lambda _job: None) == 1
    record = settlement.ledger.get(job_id)
    assert record is not None and record.state == "cancelled"
    assert escrow.find_lock(payee_chain, job_id, ocean_token, payer.address) is None
    assert escrow.get_funds(payee_chain, payer.address, ocean_token).locked == 0


def test_release_gives_the_whole_lock_back_and_a_job_locks_once(
    tmp_path: Path, payee_chain: EscrowChain, payer: Payer, ocean_token: str
) -> None:
    db = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(db)
    settlement = Settlement(db, payee_chain)
    before = escrow.get_funds(payee_chain, payer.address, ocean_token)
    terms: dict[str, Any] = dict(
        token=ocean_token,
        payer=payer.address,
        amount=QUOTE,
        expiry_s=3600,
        rate_per_minute=RATE,
        min_duration_s=MIN_S,
        max_duration_s=MAX_S,
    )
    job_id = new_job_id()
    settlement.lock(job_id, **terms)
    with pytest.raises(escrow.PaymentError) as info:
        settlement.lock(job_id, **terms)
    assert info.value.code == "lock_exists"
    assert escrow.get_funds(payee_chain, payer.address, ocean_token).locked == QUOTE
    result = settlement.release(job_id, "the job could not be queued")
    assert result is not None and result.outcome == "claimed" and result.amount == 0
    assert escrow.get_funds(payee_chain, payer.address, ocean_token) == before
    assert settlement.release(job_id, "again") is None
    assert settlement.ledger.get(job_id).state == "claimed"  # type: ignore[union-attr]


def test_racing_settlers_claim_once(
    tmp_path: Path, payee_chain: EscrowChain, payer: Payer, ocean_token: str
) -> None:
    """A worker at 71, the sweep and a delete settling one job at the same moment."""
    db = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    store = JobStore(db)
    upgrade(store.engine)
    job_id = new_job_id()
    Settlement(db, payee_chain).lock(
        job_id,
        token=ocean_token,
        payer=payer.address,
        amount=QUOTE,
        expiry_s=3600,
        rate_per_minute=RATE,
        min_duration_s=MIN_S,
        max_duration_s=MAX_S,
    )
    _ran(store, job_id)
    before = _total(payee_chain, payer, ocean_token)
    settlers = [Settlement(db, payee_chain) for _ in range(3)]
    answers: list[bool] = []
    barrier = threading.Barrier(len(settlers))

    def settle(settlement: Settlement) -> None:
        barrier.wait()
        answers.append(settlement.settle(job_id))

    threads = [threading.Thread(target=settle, args=(s,)) for s in settlers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    # a settler that lost the race may report "pending"; one more pass settles it for good
    assert len(answers) == 3 and any(answers)
    assert settlers[0].settle(job_id) is True
    record = settlers[0].ledger.get(job_id)
    assert record is not None and record.state == "claimed"
    assert before - _total(payee_chain, payer, ocean_token) == RATE * MIN_S // 60
    assert escrow.get_funds(payee_chain, payer.address, ocean_token).locked == 0


def test_a_job_whose_lock_would_expire_first_never_starts(
    make_engine_for: Callable[..., Engine],
    payee_chain: EscrowChain,
    payer: Payer,
    ocean_token: str,
    paid_request: Callable[[str], JobRequest],
) -> None:
    engine = make_engine_for()
    before = escrow.get_funds(payee_chain, payer.address, ocean_token)
    job_id = new_job_id()
    engine.settlement.lock(
        job_id,
        token=ocean_token,
        payer=payer.address,
        amount=QUOTE,
        expiry_s=MAX_S // 2,  # shorter than the job may run: it could never be claimed
        rate_per_minute=RATE,
        min_duration_s=MIN_S,
        max_duration_s=MAX_S,
    )
    engine.submit(paid_request(job_id))
    engine.run_until_idle()
    job = engine.get(job_id)
    assert job is not None and job.status is JobStatus.STOPPED
    assert job.reason is not None and "escrow lock expires" in job.reason
    assert [to for _f, to, _d in engine.store.events(job_id)] == [1, 10, 7]
    record = engine.settlement.ledger.get(job_id)
    assert record is not None and (record.state, record.claimed_amount) == ("claimed", 0)
    assert escrow.get_funds(payee_chain, payer.address, ocean_token) == before

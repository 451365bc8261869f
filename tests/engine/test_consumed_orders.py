"""Every payment tx starts at most one job (docs/protocol.md §5), on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from datastore.jobs import JobStore, OrderAlreadyUsed
from operator_engine.backends.fake import FakeBackend
from operator_engine.models import Payments
from tests.engine.helpers import env, request, settings_for
from tidewater.engine_config import build_engine

CHAIN = 8996
A, B, C, D = ("0x" + ch * 64 for ch in "abcd")


def paid(*txs: str, chain_id: int = CHAIN) -> Payments:
    return Payments.of(chain_id, txs)


@pytest.fixture
def store(store_db: sa.Engine) -> JobStore:
    return JobStore(store_db)


def test_the_same_payments_answer_the_same_job(store: JobStore) -> None:
    job, created = store.insert(request(agreement_id=A), algo_did="raw", payments=paid(A, B))
    again, created_again = store.insert(
        request(agreement_id=A), algo_did="raw", payments=paid(B.upper().replace("0X", "0x"), A)
    )
    assert (created, created_again) == (True, False) and again.job_id == job.job_id
    assert store.job_paid_by(paid(A, B)) is not None
    assert store.consumed(CHAIN, [A, B.upper(), C]) == {A, B}


@pytest.mark.parametrize(
    ("second", "named"),
    [
        ((A, C), (A,)),  # the algorithm's order with a fresh dataset order
        ((C, B), (B,)),  # an additional dataset's order reused
        ((A,), (A,)),  # a subset of the first job's payments
        ((A, B, C), (A, B)),  # a superset
    ],
)
def test_any_other_use_is_refused_and_consumes_nothing(
    store: JobStore, second: tuple[str, ...], named: tuple[str, ...]
) -> None:
    store.insert(request(agreement_id=A), algo_did="raw", payments=paid(A, B))
    with pytest.raises(OrderAlreadyUsed) as refused:
        store.insert(request(agreement_id=second[0]), algo_did="raw", payments=paid(*second))
    assert refused.value.tx_ids == named
    with pytest.raises(OrderAlreadyUsed):
        store.job_paid_by(paid(*second))
    # the refused request spent nothing: its fresh order still starts a job
    assert C not in store.consumed(CHAIN, [C])
    _job, created = store.insert(request(agreement_id=C), algo_did="raw", payments=paid(C, D))
    assert created


def test_deleting_the_job_does_not_give_the_payment_back(store: JobStore) -> None:
    job, _ = store.insert(request(agreement_id=A), algo_did="raw", payments=paid(A))
    assert store.delete(job.job_id) and store.get(job.job_id) is None
    with pytest.raises(OrderAlreadyUsed) as refused:
        store.insert(request(agreement_id=A), algo_did="raw", payments=paid(A))
    assert refused.value.tx_ids == (A,)
    assert store.consumed(CHAIN, [A]) == {A}


def test_payments_are_keyed_by_chain(store: JobStore) -> None:
    first, _ = store.insert(request(agreement_id=A), algo_did="raw", payments=paid(A))
    other, created = store.insert(request(), algo_did="raw", payments=paid(A, chain_id=CHAIN + 1))
    assert created and other.job_id != first.job_id


def test_concurrent_submits_of_overlapping_payments_make_one_job(store: JobStore) -> None:
    outcomes: list[str] = []
    lock = threading.Lock()

    def submit(txs: tuple[str, ...]) -> None:
        try:
            job, _ = store.insert(request(), algo_did="raw", payments=paid(*txs))
            outcome = job.job_id
        except OrderAlreadyUsed:
            outcome = "refused"
        with lock:
            outcomes.append(outcome)

    sets = [(A, B), (A, B), (C, A), (A, D), (B, A), (A,)]  # each pair shares A
    threads = [threading.Thread(target=submit, args=(txs,)) for txs in sets]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    jobs = {o for o in outcomes if o != "refused"}
    assert len(outcomes) == len(sets) and len(jobs) == 1
    [winner] = jobs
    holders = store.consumed(CHAIN, [A, B, C, D])
    assert len(store.job_ids()) == 1
    assert holders in ({A, B}, {A, C}, {A, D}, {A})
    assert store.get(winner) is not None


def test_engine_submit_consumes_and_refuses(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, [env()], allow_non_public_ip=True)
    engine = build_engine(settings, backend=FakeBackend())
    job = engine.submit(request(agreement_id=A), payments=paid(A, B))
    assert engine.submit(request(agreement_id=A), payments=paid(A, B)).job_id == job.job_id
    with pytest.raises(OrderAlreadyUsed):
        engine.submit(request(agreement_id=C), payments=paid(C, B))
    assert engine.consumed_orders(CHAIN, [A, C]) == {A}
    # a path that does not consume (Ocean Node's escrow-paid jobs) leaves payments alone
    free = engine.submit(request(agreement_id=None))
    assert free.job_id != job.job_id and engine.consumed_orders(CHAIN, [C, D]) == set()

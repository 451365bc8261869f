"""The real Escrow (ocean-contracts 3.1.0) on a real ganache: deposits, authorizations, the
payment checks, locks, 7-argument claims and cancelling expired locks.

Every test uses a fresh payee and fresh payers, so the session's shared chain never leaks
escrow state between tests.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3
from web3.exceptions import Web3RPCError

from contracts_abi import escrow
from contracts_abi.artifacts import contract
from contracts_abi.escrow import EscrowChain, EscrowUnavailable, PaymentError
from tests.fixtures.escrow import Payer

pytestmark = pytest.mark.integration

ONE = 10**18
DAY = 24 * 3600


@pytest.fixture
def ocean(ocean_token: str) -> str:
    return ocean_token


def _job() -> str:
    return uuid.uuid4().hex


def _ocean_balance(w3: Web3, ocean: str, address: str) -> int:
    return int(contract(w3, "MockOcean", ocean).functions.balanceOf(address).call())


def _wait_for_block_time_past(w3: Web3, moment: int, timeout: float = 60.0) -> None:
    """Mine empty blocks until the chain's latest block is later than ``moment``."""
    deadline = time.monotonic() + timeout
    while int(w3.eth.get_block("latest")["timestamp"]) <= moment:
        assert time.monotonic() < deadline, "the chain clock did not pass the lock's expiry"
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        time.sleep(0.2)


def test_deployed_with_router_and_collector(
    w3: Web3, deployed: dict[str, Any], payee_chain: EscrowChain
) -> None:
    functions = payee_chain.contract.functions
    assert functions.factoryRouter().call() == deployed["Router"]
    assert functions.opcCollector().call() == deployed["OPFCommunityFeeCollector"]
    assert payee_chain.address == deployed["Escrow"]


def test_missing_escrow_address_is_unavailable(w3: Web3, deployed: dict[str, Any]) -> None:
    without = {k: v for k, v in deployed.items() if k != "Escrow"}
    with pytest.raises(EscrowUnavailable) as info:
        EscrowChain.from_addresses(w3, without, Account.create())
    assert info.value.code == "escrow_not_deployed" and info.value.http_status == 503


def test_an_address_without_the_contract_is_unavailable(
    w3: Web3, deployed: dict[str, Any], ocean: str
) -> None:
    wrong = {**deployed, "Escrow": Account.create().address}  # no code there
    chain = EscrowChain.from_addresses(w3, wrong, Account.create())
    with pytest.raises(EscrowUnavailable) as info:
        escrow.check_payment(chain, Account.create().address, ocean, ONE, 60)
    assert info.value.code == "escrow_not_deployed"


def test_lock_id_is_sha256_of_the_job_id() -> None:
    import hashlib

    assert escrow.lock_id_for("job-1") == int(hashlib.sha256(b"job-1").hexdigest(), 16)


def test_deposit_and_authorization_are_read_back(
    payee_chain: EscrowChain, new_payer: Callable[..., Payer], ocean: str
) -> None:
    payer = new_payer(deposit=7 * ONE, payee=payee_chain.payee_address, limits=(5 * ONE, 600, 3))
    assert escrow.get_funds(payee_chain, payer.address, ocean) == escrow.Funds(7 * ONE, 0)
    (auth,) = escrow.get_authorizations(payee_chain, payer.address, ocean)
    assert auth == escrow.Authorization(payee_chain.payee_address, 5 * ONE, 0, 600, 3, 0)


# (payer setup, amount, expiry, expected code): one row per refusal rule of check_payment
REFUSALS = [
    pytest.param(dict(deposit=10 * ONE), ONE, 60, "no_authorization", id="no-authorization"),
    pytest.param(dict(deposit=ONE, auth=True), 2 * ONE, 60, "insufficient_funds", id="funds"),
    pytest.param(
        dict(deposit=10 * ONE, auth=True, limits=(10 * ONE, 100, 5)),
        ONE,
        101,
        "expiry_too_long",
        id="max-lock-seconds",
    ),
    pytest.param(
        dict(deposit=10 * ONE, auth=True, limits=(ONE, DAY, 5)),
        ONE + 1,
        60,
        "over_max_locked_amount",
        id="max-locked-amount",
    ),
    pytest.param(
        dict(deposit=10 * ONE, auth=True, limits=(10 * ONE, DAY, 0)),
        ONE,
        60,
        "over_max_lock_count",
        id="max-lock-counts",
    ),
    pytest.param(dict(deposit=10 * ONE, auth=True), 0, 60, "invalid_amount", id="zero-amount"),
    pytest.param(dict(deposit=10 * ONE, auth=True), ONE, 0, "invalid_expiry", id="zero-expiry"),
]


@pytest.mark.parametrize(("setup", "amount", "expiry", "code"), REFUSALS)
def test_check_payment_refuses(
    payee_chain: EscrowChain,
    new_payer: Callable[..., Payer],
    ocean: str,
    setup: dict[str, Any],
    amount: int,
    expiry: int,
    code: str,
) -> None:
    payee = payee_chain.payee_address if setup.pop("auth", False) else None
    payer = new_payer(payee=payee, **setup)
    with pytest.raises(PaymentError) as info:
        escrow.check_payment(payee_chain, payer.address, ocean, amount, expiry)
    assert info.value.code == code and info.value.http_status == 400
    # create_lock refuses the same way and locks nothing
    with pytest.raises(PaymentError) as again:
        escrow.create_lock(payee_chain, _job(), ocean, payer.address, amount, expiry)
    assert again.value.code == code
    assert escrow.get_funds(payee_chain, payer.address, ocean).locked == 0


def test_one_payers_authorization_does_not_cover_another(
    payee_chain: EscrowChain, new_payer: Callable[..., Payer], ocean: str
) -> None:
    authorized = new_payer(deposit=10 * ONE, payee=payee_chain.payee_address)
    other = new_payer(deposit=10 * ONE)  # funds, but authorized nobody
    escrow.check_payment(payee_chain, authorized.address, ocean, ONE, 600)
    with pytest.raises(PaymentError) as info:
        escrow.check_payment(payee_chain, other.address, ocean, ONE, 600)
    assert info.value.code == "no_authorization"


def test_payer_cannot_be_the_payee(
    w3: Web3, deployed: dict[str, Any], payee_chain: EscrowChain, ocean: str
) -> None:
    with pytest.raises(PaymentError) as info:
        escrow.check_payment(payee_chain, payee_chain.payee_address, ocean, ONE, 60)
    assert info.value.code == "payer_is_payee"


def test_lock_then_claim_less_moves_exactly_the_claim(
    w3: Web3,
    deployed: dict[str, Any],
    payee_chain: EscrowChain,
    new_payer: Callable[..., Payer],
    ocean: str,
) -> None:
    payer = new_payer(deposit=10 * ONE, payee=payee_chain.payee_address)
    job_id = _job()
    tx = escrow.create_lock(payee_chain, job_id, ocean, payer.address, 4 * ONE, 3600)
    assert w3.eth.get_transaction_receipt(tx)["status"] == 1
    assert escrow.get_funds(payee_chain, payer.address, ocean) == escrow.Funds(6 * ONE, 4 * ONE)
    lock = escrow.find_lock(payee_chain, job_id, ocean, payer.address)
    assert lock is not None and lock.amount == 4 * ONE and lock.job_id == escrow.lock_id_for(job_id)
    (auth,) = escrow.get_authorizations(payee_chain, payer.address, ocean)
    assert (auth.current_locked_amount, auth.current_locks) == (4 * ONE, 1)

    # the same job cannot be locked twice (the contract's own rule, mapped to a code)
    with pytest.raises(PaymentError) as info:
        escrow.create_lock(payee_chain, job_id, ocean, payer.address, ONE, 3600)
    assert info.value.code == "lock_exists"

    payee_before = _ocean_balance(w3, ocean, payee_chain.payee_address)
    claimed = 3 * ONE // 2
    result = escrow.claim(payee_chain, job_id, ocean, payer.address, claimed, b'{"jobId":"x"}')
    assert result.outcome == "claimed" and result.amount == claimed and result.tx_hash
    funds = escrow.get_funds(payee_chain, payer.address, ocean)
    assert funds == escrow.Funds(10 * ONE - claimed, 0)  # the rest of the lock is available again
    (auth,) = escrow.get_authorizations(payee_chain, payer.address, ocean)
    assert (auth.current_locked_amount, auth.current_locks) == (0, 0)
    fee = (
        claimed
        * contract(w3, "FactoryRouter", deployed["Router"]).functions.getOPCFee(ocean).call()
        // ONE
    )
    assert _ocean_balance(w3, ocean, payee_chain.payee_address) - payee_before == claimed - fee
    assert escrow.find_lock(payee_chain, job_id, ocean, payer.address) is None

    # claiming again sends nothing and moves nothing
    again = escrow.claim(payee_chain, job_id, ocean, payer.address, claimed, b"{}")
    assert again == escrow.ClaimResult("absent")
    assert escrow.get_funds(payee_chain, payer.address, ocean) == funds
    found = escrow.settlement_event(payee_chain, job_id, payer.address, 0)
    assert found == escrow.ClaimResult("claimed", claimed, result.tx_hash)


def test_claim_above_the_lock_is_refused(
    payee_chain: EscrowChain, new_payer: Callable[..., Payer], ocean: str
) -> None:
    payer = new_payer(deposit=10 * ONE, payee=payee_chain.payee_address)
    job_id = _job()
    escrow.create_lock(payee_chain, job_id, ocean, payer.address, ONE, 3600)
    with pytest.raises(PaymentError) as info:
        escrow.claim(payee_chain, job_id, ocean, payer.address, ONE + 1, b"{}")
    assert info.value.code == "amount_too_high"
    assert escrow.get_funds(payee_chain, payer.address, ocean).locked == ONE


def test_expired_locks_are_cancelled_back_to_the_payer(
    w3: Web3, payee_chain: EscrowChain, new_payer: Callable[..., Payer], ocean: str
) -> None:
    payer = new_payer(deposit=10 * ONE, payee=payee_chain.payee_address)
    short, late, live = _job(), _job(), _job()
    escrow.create_lock(payee_chain, short, ocean, payer.address, ONE, 1)
    escrow.create_lock(payee_chain, late, ocean, payer.address, ONE, 1)
    escrow.create_lock(payee_chain, live, ocean, payer.address, ONE, 3600)
    expiries = [lock.expiry for lock in escrow.get_locks(payee_chain)]
    assert escrow.get_funds(payee_chain, payer.address, ocean) == escrow.Funds(7 * ONE, 3 * ONE)
    _wait_for_block_time_past(w3, sorted(expiries)[1])  # the two short locks have expired

    # a claim that comes too late cancels instead: the payer gets it all back
    result = escrow.claim(payee_chain, late, ocean, payer.address, ONE, b"{}")
    assert result.outcome == "cancelled" and result.amount == 0
    tx = escrow.cancel_expired_locks(payee_chain)
    assert tx is not None and w3.eth.get_transaction_receipt(tx)["status"] == 1
    assert escrow.find_lock(payee_chain, short, ocean, payer.address) is None
    assert escrow.find_lock(payee_chain, live, ocean, payer.address) is not None
    assert escrow.get_funds(payee_chain, payer.address, ocean) == escrow.Funds(9 * ONE, ONE)
    assert escrow.cancel_expired_locks(payee_chain) is None  # nothing left to cancel
    assert escrow.settlement_event(payee_chain, short, payer.address, 0).outcome == "cancelled"


def test_chain_down_is_unavailable(deployed: dict[str, Any], ocean: str) -> None:
    from contracts_abi.devchain import free_port

    dead = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{free_port()}", request_kwargs={"timeout": 2}))
    chain = EscrowChain.from_addresses(dead, deployed, Account.create())
    with pytest.raises(EscrowUnavailable) as info:
        escrow.check_payment(chain, Account.create().address, ocean, ONE, 60)
    assert info.value.code == "chain_unavailable" and info.value.http_status == 503


def test_a_nonce_taken_by_another_process_is_retried(
    w3: Web3,
    monkeypatch: pytest.MonkeyPatch,
    payee_chain: EscrowChain,
    new_payer: Callable[..., Payer],
    ocean: str,
) -> None:
    """Another process sent from the payee between our nonce read and our broadcast. ganache
    itself accepts a reused nonce, so the refusal a real node (geth) gives is injected once;
    the lock then goes out with a freshly read nonce and is mined."""
    payer = new_payer(deposit=10 * ONE, payee=payee_chain.payee_address)
    real = w3.eth.send_raw_transaction
    refused: list[bytes] = []

    def node_refuses_once(raw: Any) -> Any:
        if not refused:
            refused.append(bytes(raw))
            error = {"code": -32000, "message": "nonce too low"}
            raise Web3RPCError(str(error), rpc_response={"error": error})  # type: ignore[typeddict-item]
        return real(raw)

    monkeypatch.setattr(w3.eth, "send_raw_transaction", node_refuses_once)
    tx = escrow.create_lock(payee_chain, _job(), ocean, payer.address, ONE, 600)
    assert refused and w3.eth.get_transaction_receipt(tx)["status"] == 1
    assert escrow.get_funds(payee_chain, payer.address, ocean).locked == ONE


def test_other_broadcast_errors_are_not_retried(
    w3: Web3,
    monkeypatch: pytest.MonkeyPatch,
    payee_chain: EscrowChain,
    new_payer: Callable[..., Payer],
    ocean: str,
) -> None:
    payer = new_payer(deposit=10 * ONE, payee=payee_chain.payee_address)
    calls: list[int] = []

    def node_refuses(raw: Any) -> Any:
        calls.append(1)
        error = {"code": -32000, "message": "insufficient funds for gas * price + value"}
        raise Web3RPCError(str(error), rpc_response={"error": error})  # type: ignore[typeddict-item]

    monkeypatch.setattr(w3.eth, "send_raw_transaction", node_refuses)
    with pytest.raises(escrow.EscrowTxError) as info:
        escrow.create_lock(payee_chain, _job(), ocean, payer.address, ONE, 600)
    assert info.value.http_status == 502 and "insufficient funds" in info.value.message
    assert calls == [1]

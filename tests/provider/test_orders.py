"""Order validation (PROTOCOL §5) against real orders on ganache, forgeries and replays included."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3

from contracts_abi import publish
from operator_engine.models import ComputeEnvironment
from provider.fees import provider_fee
from provider.orders import (
    NotDeployed,
    OrderExpired,
    OrderMismatch,
    OrderNotFound,
    OrderValidator,
    ProviderFeeInvalid,
    chain_now,
)

pytestmark = pytest.mark.integration
ONE = 10**18


@pytest.fixture(scope="module")
def env(provider_account: LocalAccount) -> ComputeEnvironment:
    return ComputeEnvironment(id="env-orders", consumer_address=provider_account.address)


def _asset(w3: Web3, publisher: LocalAccount, deployed: dict[str, Any], consumer: str, **kw: Any):
    token = publish.create_data_nft_with_datatoken(w3, publisher, deployed, name="ord", symbol="O")
    ddo = publish.dataset_ddo(
        nft_address=token.nft_address,
        chain_id=w3.eth.chain_id,
        owner=publisher.address,
        datatoken_address=token.datatoken_address,
        files="0x00",
        service_endpoint="http://127.0.0.1:8030",
        **kw,
    )
    publish.mint(w3, publisher, token.datatoken_address, consumer, 10 * ONE)
    return token, ddo["services"][0]["id"]


@pytest.fixture(scope="module")
def asset(
    w3: Web3, publisher_account: LocalAccount, deployed: dict, consumer_account: LocalAccount
):
    return _asset(w3, publisher_account, deployed, consumer_account.address)


@pytest.fixture(scope="module")
def validator(w3: Web3, provider_account: LocalAccount) -> OrderValidator:
    return OrderValidator(w3, provider_account.address)


def _fee(
    w3: Web3, key: str, env: ComputeEnvironment, dt: str, sid: str, valid_for: int = 3600, **kw: Any
):
    return provider_fee(
        key,
        env=env,
        datatoken=dt,
        service_id=sid,
        valid_until=chain_now(w3) + valid_for,
        charge=True,
        w3=None,
        **kw,
    )


def _order(w3: Web3, payer: LocalAccount, dt: str, fee: dict, consumer: str, index: int = 0) -> str:
    receipt = publish.start_order(
        w3, payer, dt, consumer_address=consumer, service_index=index, provider_fee=fee
    )
    return HexBytes(receipt["transactionHash"]).to_0x_hex()


def _validate(validator: OrderValidator, token: Any, sid: str, tx: str, requester: str, **kw: Any):
    args = {
        "tx_id": tx,
        "requester": requester,
        "nft_address": token.nft_address,
        "datatoken": token.datatoken_address,
        "service_id": sid,
        "service_index": 0,
        "environment": "env-orders",
    }
    return validator.validate(**{**args, **kw})


def test_valid_order_and_reuse(
    w3: Web3,
    validator: OrderValidator,
    asset: Any,
    env: ComputeEnvironment,
    consumer_account: LocalAccount,
    provider_private_key: str,
) -> None:
    token, sid = asset
    fee = _fee(w3, provider_private_key, env, token.datatoken_address, sid)
    tx = _order(w3, consumer_account, token.datatoken_address, fee, env.consumer_address)
    order = _validate(validator, token, sid, tx, consumer_account.address)
    assert order.payer == consumer_account.address
    assert order.consumer == env.consumer_address
    assert order.amount >= ONE
    # the environment's consumer address is also entitled
    _validate(validator, token, sid, tx, env.consumer_address)

    new_fee = _fee(w3, provider_private_key, env, token.datatoken_address, sid, valid_for=7200)
    reuse = publish.reuse_order(
        w3, consumer_account, token.datatoken_address, order_tx_id=tx, provider_fee=new_fee
    )
    reuse_tx = HexBytes(reuse["transactionHash"]).to_0x_hex()
    reused = _validate(validator, token, sid, reuse_tx, consumer_account.address)
    assert reused.start_tx_id.lower() == tx.lower()
    assert reused.provider_fee["validUntil"] == new_fee["validUntil"]


def test_unknown_tx_is_refused(validator: OrderValidator, asset: Any, consumer_account) -> None:
    token, sid = asset
    with pytest.raises(OrderNotFound):
        _validate(validator, token, sid, "0x" + "ab" * 32, consumer_account.address)
    with pytest.raises(OrderNotFound):
        _validate(validator, token, sid, "0x1234", consumer_account.address)


def test_order_of_someone_else(
    w3: Web3,
    validator: OrderValidator,
    asset: Any,
    env: ComputeEnvironment,
    consumer_account: LocalAccount,
    other_account: LocalAccount,
    provider_private_key: str,
) -> None:
    token, sid = asset
    fee = _fee(w3, provider_private_key, env, token.datatoken_address, sid)
    tx = _order(w3, consumer_account, token.datatoken_address, fee, env.consumer_address)
    with pytest.raises(OrderMismatch, match="consumer nor its payer"):
        _validate(validator, token, sid, tx, other_account.address)


def test_forged_events_from_another_contract(
    w3: Web3,
    validator: OrderValidator,
    asset: Any,
    env: ComputeEnvironment,
    publisher_account: LocalAccount,
    consumer_account: LocalAccount,
    deployed: dict,
    provider_private_key: str,
) -> None:
    """A second datatoken emits same-shaped ProviderFee/OrderStarted logs naming the real one."""
    token, sid = asset
    decoy, _ = _asset(w3, publisher_account, deployed, consumer_account.address)
    # providerData names the *real* datatoken and service: only the emitter gives it away
    fee = _fee(w3, provider_private_key, env, token.datatoken_address, sid)
    tx = _order(w3, consumer_account, decoy.datatoken_address, fee, env.consumer_address)
    with pytest.raises(ProviderFeeInvalid):
        _validate(validator, token, sid, tx, consumer_account.address)


def test_datatoken_not_deployed_by_the_nft(
    w3: Web3,
    validator: OrderValidator,
    asset: Any,
    env: ComputeEnvironment,
    publisher_account: LocalAccount,
    consumer_account: LocalAccount,
    deployed: dict,
    provider_private_key: str,
) -> None:
    token, sid = asset
    decoy, _ = _asset(w3, publisher_account, deployed, consumer_account.address)
    fee = _fee(w3, provider_private_key, env, token.datatoken_address, sid)
    tx = _order(w3, consumer_account, token.datatoken_address, fee, env.consumer_address)
    with pytest.raises(NotDeployed):
        _validate(
            validator, token, sid, tx, consumer_account.address, nft_address=decoy.nft_address
        )


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"environment": "another-env"}, ProviderFeeInvalid),
        ({"service_index": 1}, OrderMismatch),
        ({"service_id": "another-service"}, ProviderFeeInvalid),
    ],
)
def test_mismatched_requests(
    w3: Web3,
    validator: OrderValidator,
    asset: Any,
    env: ComputeEnvironment,
    consumer_account: LocalAccount,
    provider_private_key: str,
    change: dict,
    error: type,
) -> None:
    token, sid = asset
    fee = _fee(w3, provider_private_key, env, token.datatoken_address, sid)
    tx = _order(w3, consumer_account, token.datatoken_address, fee, env.consumer_address)
    with pytest.raises(error):
        _validate(validator, token, sid, tx, consumer_account.address, **change)


def test_fee_signed_by_another_key(
    w3: Web3,
    validator: OrderValidator,
    asset: Any,
    env: ComputeEnvironment,
    consumer_account: LocalAccount,
    other_account: LocalAccount,
) -> None:
    token, sid = asset
    fee = _fee(w3, other_account.key.hex(), env, token.datatoken_address, sid)
    tx = _order(w3, consumer_account, token.datatoken_address, fee, env.consumer_address)
    with pytest.raises(ProviderFeeInvalid, match="not issued to this provider"):
        _validate(validator, token, sid, tx, consumer_account.address)


def test_expired_fee_and_service_timeout(
    w3: Web3,
    validator: OrderValidator,
    env: ComputeEnvironment,
    publisher_account: LocalAccount,
    consumer_account: LocalAccount,
    deployed: dict,
    provider_private_key: str,
) -> None:
    token, sid = _asset(w3, publisher_account, deployed, consumer_account.address, timeout=30)
    fee = _fee(w3, provider_private_key, env, token.datatoken_address, sid, valid_for=20)
    tx = _order(w3, consumer_account, token.datatoken_address, fee, env.consumer_address)
    _validate(validator, token, sid, tx, consumer_account.address, service_timeout=30)
    w3.provider.make_request("evm_increaseTime", [120])
    w3.provider.make_request("evm_mine", [])
    with pytest.raises(OrderExpired, match="validUntil"):
        _validate(validator, token, sid, tx, consumer_account.address, service_timeout=30)
    with pytest.raises(OrderExpired, match="service timeout"):
        _validate(
            validator,
            token,
            sid,
            tx,
            consumer_account.address,
            service_timeout=30,
            check_valid_until=False,
        )

"""Order validation (docs/protocol.md §5) against real orders on ganache, forgeries and replays
included."""

from __future__ import annotations

from dataclasses import dataclass
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
from tests.fixtures.publishing import new_dataset

pytestmark = pytest.mark.integration
ONE = 10**18


@dataclass(frozen=True)
class Asset:
    token: publish.PublishedToken
    sid: str


@dataclass
class Orders:
    """The consumer orders assets on the session chain; ``validator`` judges the orders."""

    w3: Web3
    validator: OrderValidator
    env: ComputeEnvironment
    publisher: LocalAccount
    consumer: LocalAccount
    deployed: dict[str, Any]
    provider_key: str

    def new_asset(self, **ddo_kwargs: Any) -> Asset:
        """A dataset; the consumer holds 10 of its datatokens."""
        token, ddo = new_dataset(
            self.w3, self.publisher, self.deployed, name="ord", symbol="O", **ddo_kwargs
        )
        publish.mint(
            self.w3, self.publisher, token.datatoken_address, self.consumer.address, 10 * ONE
        )
        return Asset(token, ddo["services"][0]["id"])

    def fee(self, asset: Asset, *, key: str | None = None, valid_for: int = 3600) -> dict:
        """A provider fee for ``asset`` on the env, signed by ``key`` (default: the provider)."""
        return provider_fee(
            key or self.provider_key,
            env=self.env,
            datatoken=asset.token.datatoken_address,
            service_id=asset.sid,
            valid_until=chain_now(self.w3) + valid_for,
            charge=True,
            w3=None,
        )

    def order(self, fee: dict, asset: Asset) -> str:
        """The consumer's startOrder of ``asset``'s datatoken, for the env; its tx id."""
        receipt = publish.start_order(
            self.w3,
            self.consumer,
            asset.token.datatoken_address,
            consumer_address=self.env.consumer_address,
            service_index=0,
            provider_fee=fee,
        )
        return HexBytes(receipt["transactionHash"]).to_0x_hex()

    def ordered(self, asset: Asset, **fee_kwargs: Any) -> tuple[dict, str]:
        """``asset`` ordered with a fresh fee: (fee, tx id)."""
        fee = self.fee(asset, **fee_kwargs)
        return fee, self.order(fee, asset)

    def validate(self, asset: Asset, tx: str, requester: str | None = None, **changes: Any):
        """What the validator says of ``tx`` as an order of ``asset`` for the env."""
        args = {
            "tx_id": tx,
            "requester": requester or self.consumer.address,
            "nft_address": asset.token.nft_address,
            "datatoken": asset.token.datatoken_address,
            "service_id": asset.sid,
            "service_index": 0,
            "environment": self.env.id,
        }
        return self.validator.validate(**{**args, **changes})


@pytest.fixture(scope="module")
def orders(
    w3: Web3,
    provider_account: LocalAccount,
    publisher_account: LocalAccount,
    consumer_account: LocalAccount,
    deployed: dict[str, Any],
    provider_private_key: str,
) -> Orders:
    return Orders(
        w3=w3,
        validator=OrderValidator(w3, provider_account.address),
        env=ComputeEnvironment(id="env-orders", consumer_address=provider_account.address),
        publisher=publisher_account,
        consumer=consumer_account,
        deployed=deployed,
        provider_key=provider_private_key,
    )


@pytest.fixture(scope="module")
def asset(orders: Orders) -> Asset:
    return orders.new_asset()


def test_valid_order_and_reuse(orders: Orders, asset: Asset) -> None:
    _, tx = orders.ordered(asset)
    order = orders.validate(asset, tx)
    assert order.payer == orders.consumer.address
    assert order.consumer == orders.env.consumer_address
    assert order.amount >= ONE
    # the environment's consumer address is also entitled
    orders.validate(asset, tx, orders.env.consumer_address)

    new_fee = orders.fee(asset, valid_for=7200)
    reuse = publish.reuse_order(
        orders.w3,
        orders.consumer,
        asset.token.datatoken_address,
        order_tx_id=tx,
        provider_fee=new_fee,
    )
    reused = orders.validate(asset, HexBytes(reuse["transactionHash"]).to_0x_hex())
    assert reused.start_tx_id.lower() == tx.lower()
    assert reused.provider_fee["validUntil"] == new_fee["validUntil"]


def test_unknown_tx_is_refused(orders: Orders, asset: Asset) -> None:
    with pytest.raises(OrderNotFound):
        orders.validate(asset, "0x" + "ab" * 32)
    with pytest.raises(OrderNotFound):
        orders.validate(asset, "0x1234")


def test_order_of_someone_else(orders: Orders, asset: Asset, other_account: LocalAccount) -> None:
    _, tx = orders.ordered(asset)
    with pytest.raises(OrderMismatch, match="consumer nor its payer"):
        orders.validate(asset, tx, other_account.address)


def test_forged_events_from_another_contract(orders: Orders, asset: Asset) -> None:
    """A second datatoken emits same-shaped ProviderFee/OrderStarted logs naming the real one."""
    decoy = orders.new_asset()
    # providerData names the *real* datatoken and service: only the emitter gives it away
    tx = orders.order(orders.fee(asset), decoy)
    with pytest.raises(ProviderFeeInvalid):
        orders.validate(asset, tx)


def test_datatoken_not_deployed_by_the_nft(orders: Orders, asset: Asset) -> None:
    decoy = orders.new_asset()
    _, tx = orders.ordered(asset)
    with pytest.raises(NotDeployed):
        orders.validate(asset, tx, nft_address=decoy.token.nft_address)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"environment": "another-env"}, ProviderFeeInvalid),
        ({"service_index": 1}, OrderMismatch),
        ({"service_id": "another-service"}, ProviderFeeInvalid),
    ],
)
def test_mismatched_requests(orders: Orders, asset: Asset, change: dict, error: type) -> None:
    _, tx = orders.ordered(asset)
    with pytest.raises(error):
        orders.validate(asset, tx, **change)


def test_fee_signed_by_another_key(
    orders: Orders, asset: Asset, other_account: LocalAccount
) -> None:
    _, tx = orders.ordered(asset, key=other_account.key.hex())
    with pytest.raises(ProviderFeeInvalid, match="not issued to this provider"):
        orders.validate(asset, tx)


def test_expired_fee_and_service_timeout(orders: Orders) -> None:
    asset = orders.new_asset(timeout=30)
    _, tx = orders.ordered(asset, valid_for=20)
    orders.validate(asset, tx, service_timeout=30)
    orders.w3.provider.make_request("evm_increaseTime", [120])
    orders.w3.provider.make_request("evm_mine", [])
    with pytest.raises(OrderExpired, match="validUntil"):
        orders.validate(asset, tx, service_timeout=30)
    with pytest.raises(OrderExpired, match="service timeout"):
        orders.validate(asset, tx, service_timeout=30, check_valid_until=False)

"""The real Ocean V4 contracts on a real ganache: deploy, publish, mint, order, fees."""

from __future__ import annotations

import hashlib
import json
import lzma
import time
from typing import Any

import ecies
import pytest
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3

from contracts_abi import publish
from contracts_abi.artifacts import contract
from contracts_abi.checksums import container_section_checksum, files_checksum
from contracts_abi.did import compute_did
from contracts_abi.errors import TxFailed
from contracts_abi.events import decode_events
from contracts_abi.fees import (
    decode_provider_data,
    provider_data,
    recover_provider_fee_signer,
    sign_provider_fee,
)
from contracts_abi.publish import ZERO_ADDRESS
from tests.fixtures.publishing import SERVICE_ENDPOINT, ddo_fields

pytestmark = pytest.mark.integration

ONE = 10**18


def _provider_public_key(key: str) -> bytes:
    from eth_keys import keys

    return keys.PrivateKey(HexBytes(key)).public_key.to_bytes()


def _publish(
    w3: Web3, publisher: LocalAccount, deployed: dict[str, Any], name: str
) -> publish.PublishedToken:
    return publish.create_data_nft_with_datatoken(
        w3, publisher, deployed, name=name, symbol=name[:4].upper()
    )


def _start_order(
    w3: Web3,
    payer: LocalAccount,
    datatoken: str,
    fee: dict[str, Any],
    *,
    consumer_address: str | None = None,
    **kwargs: Any,
) -> Any:
    """``payer``'s startOrder of service 0 for ``consumer_address`` (default: the payer)."""
    return publish.start_order(
        w3,
        payer,
        datatoken,
        consumer_address=consumer_address or payer.address,
        service_index=0,
        provider_fee=fee,
        **kwargs,
    )


def _fee(
    key: str,
    datatoken: str,
    service_id: str,
    *,
    token: str = ZERO_ADDRESS,
    amount: int = 0,
    valid_for: int = 3600,
) -> dict[str, Any]:
    data = provider_data("env-free", datatoken, service_id, time.time())
    return sign_provider_fee(
        key,
        provider_data_hex=data,
        fee_token=token,
        amount=amount,
        valid_until=int(time.time()) + valid_for,
    )


def test_stack_is_deployed_and_wired(w3: Web3, deployed: dict[str, Any]) -> None:
    for key in ("Ocean", "Router", "ERC721Factory", "FixedPrice", "Dispenser"):
        assert len(w3.eth.get_code(deployed[key])) > 0, key
    for template in (*deployed["ERC721Template"].values(), *deployed["ERC20Template"].values()):
        assert len(w3.eth.get_code(template)) > 0
    router = contract(w3, "FactoryRouter", deployed["Router"])
    assert router.functions.factory().call() == deployed["ERC721Factory"]
    assert router.functions.isFixedRateContract(deployed["FixedPrice"]).call()
    assert router.functions.isDispenserContract(deployed["Dispenser"]).call()
    factory = contract(w3, "ERC721Factory", deployed["ERC721Factory"])
    assert factory.functions.getTokenTemplate(2).call()[0] == deployed["ERC20Template"]["2"]


def test_create_nft_with_datatoken(
    w3: Web3, deployed: dict[str, Any], publisher_account: LocalAccount
) -> None:
    token = _publish(w3, publisher_account, deployed, "Plain dataset")
    assert token.did == compute_did(token.nft_address, 8996)
    nft = contract(w3, "ERC721Template", token.nft_address)
    assert nft.functions.ownerOf(1).call() == publisher_account.address
    assert nft.functions.isDeployed(token.datatoken_address).call()
    dt = contract(w3, "ERC20Template", token.datatoken_address)
    assert dt.functions.getERC721Address().call() == token.nft_address
    assert dt.functions.getPaymentCollector().call() == publisher_account.address


def test_plain_dataset_metadata_on_chain(
    w3: Web3,
    deployed: dict[str, Any],
    publisher_account: LocalAccount,
    provider_private_key: str,
) -> None:
    token = _publish(w3, publisher_account, deployed, "Dataset one")
    files = publish.encrypt_files_locally(
        _provider_public_key(provider_private_key),
        publish.files_payload(
            token.datatoken_address,
            token.nft_address,
            [{"type": "url", "url": "http://127.0.0.1/data.csv", "method": "GET"}],
        ),
    )
    ddo = publish.dataset_ddo(
        **ddo_fields(token, chain_id=w3.eth.chain_id, owner=publisher_account.address, files=files)
    )
    assert ddo["id"] == token.did and ddo["services"][0]["type"] == "compute"
    receipt = publish.set_metadata(w3, publisher_account, token.nft_address, ddo)
    [event] = decode_events(w3, "ERC721Template", "MetadataCreated", receipt, token.nft_address)
    plain = publish.ddo_bytes(ddo)
    assert event["flags"] == b"\x00"
    assert event["data"] == plain
    assert event["metaDataHash"] == hashlib.sha256(plain).digest()
    assert event["decryptorUrl"] == SERVICE_ENDPOINT
    assert json.loads(event["data"])["services"][0]["files"] == files
    # the files ciphertext decrypts with the provider's key to the payload it was made from
    payload = json.loads(ecies.decrypt(HexBytes(provider_private_key), HexBytes(files)))
    assert payload["nftAddress"] == token.nft_address
    metadata = contract(w3, "ERC721Template", token.nft_address).functions.getMetaData().call()
    assert metadata[0] == SERVICE_ENDPOINT and metadata[2] == 0  # url, state active


@pytest.mark.parametrize(("compress", "flags"), [(False, 2), (True, 3)])
def test_encrypted_algorithm_metadata_on_chain(
    w3: Web3,
    deployed: dict[str, Any],
    publisher_account: LocalAccount,
    provider_account: LocalAccount,
    provider_private_key: str,
    compress: bool,
    flags: int,
) -> None:
    token = _publish(w3, publisher_account, deployed, "Algo")
    container = {
        "entrypoint": "python3 $ALGO",
        "image": "tidewater/python3",
        "tag": "latest",
        "checksum": "sha256:" + "ab" * 32,
    }
    ddo = publish.algorithm_ddo(
        container=container,
        **ddo_fields(token, chain_id=w3.eth.chain_id, owner=publisher_account.address),
    )
    public_key = _provider_public_key(provider_private_key)
    receipt = publish.set_metadata(
        w3,
        publisher_account,
        token.nft_address,
        ddo,
        encrypt_for_public_key=public_key,
        compress=compress,
    )
    [event] = decode_events(w3, "ERC721Template", "MetadataCreated", receipt, token.nft_address)
    assert event["flags"] == bytes([flags])
    data = ecies.decrypt(HexBytes(provider_private_key), event["data"])
    if compress:
        data = lzma.decompress(data)
    assert json.loads(data) == ddo
    assert event["metaDataHash"] == hashlib.sha256(publish.ddo_bytes(ddo)).digest()
    assert publish.public_key_address(public_key) == provider_account.address
    # trusted-algorithm entry a dataset publisher would list
    entry = publish.trusted_algorithm(ddo, [b"print(1)\n"])
    assert entry["did"] == token.did
    assert entry["filesChecksum"] == files_checksum([b"print(1)\n"])
    assert entry["containerSectionChecksum"] == container_section_checksum(container)


@pytest.fixture
def ordered_token(
    w3: Web3,
    deployed: dict[str, Any],
    publisher_account: LocalAccount,
    consumer_account: LocalAccount,
) -> publish.PublishedToken:
    token = _publish(w3, publisher_account, deployed, "Ordered")
    publish.mint(w3, publisher_account, token.datatoken_address, consumer_account.address, 3 * ONE)
    return token


def test_start_order_with_provider_fee(
    w3: Web3,
    deployed: dict[str, Any],
    publisher_account: LocalAccount,
    provider_account: LocalAccount,
    consumer_account: LocalAccount,
    other_account: LocalAccount,
    provider_private_key: str,
    ordered_token: publish.PublishedToken,
) -> None:
    dt = ordered_token.datatoken_address
    ocean = deployed["Ocean"]
    publish.transfer(w3, _deployer(), ocean, consumer_account.address, 10 * ONE)
    fee = _fee(provider_private_key, dt, "svc-1", token=ocean, amount=2 * ONE)
    ocean_c = contract(w3, "ERC20Template", ocean)
    provider_before = ocean_c.functions.balanceOf(provider_account.address).call()
    dt_c = contract(w3, "ERC20Template", dt)
    collector_before = dt_c.functions.balanceOf(publisher_account.address).call()
    consumer_before = dt_c.functions.balanceOf(consumer_account.address).call()

    receipt = _start_order(w3, consumer_account, dt, fee, consumer_address=other_account.address)

    [started] = decode_events(w3, "ERC20Template", "OrderStarted", receipt, dt)
    assert started["consumer"] == other_account.address
    assert started["payer"] == consumer_account.address
    assert started["amount"] == ONE and started["serviceIndex"] == 0
    [logged] = decode_events(w3, "ERC20Template", "ProviderFee", receipt, dt)
    assert logged["providerFeeAddress"] == provider_account.address
    assert logged["providerFeeAmount"] == 2 * ONE and logged["validUntil"] == fee["validUntil"]
    assert recover_provider_fee_signer(logged) == provider_account.address
    assert decode_provider_data(logged["providerData"])["dt"] == dt
    # the provider got its fee; the datatoken went to the payment collector (the publisher),
    # less the OPC community fee
    assert ocean_c.functions.balanceOf(provider_account.address).call() == provider_before + 2 * ONE
    assert dt_c.functions.balanceOf(consumer_account.address).call() == consumer_before - ONE
    received = dt_c.functions.balanceOf(publisher_account.address).call() - collector_before
    assert 0 < received <= ONE

    # reuseOrder with a fresh fee points back to the order
    fresh = _fee(provider_private_key, dt, "svc-1")
    reused = publish.reuse_order(
        w3, consumer_account, dt, order_tx_id=receipt["transactionHash"], provider_fee=fresh
    )
    [event] = decode_events(w3, "ERC20Template", "OrderReused", reused, dt)
    assert event["orderTxId"] == bytes(receipt["transactionHash"])
    assert event["caller"] == consumer_account.address


def _deployer() -> LocalAccount:
    from contracts_abi.devchain import dev_account

    return dev_account("deployer")


def test_expired_fee_is_accepted_on_chain_so_the_provider_must_check_it(
    w3: Web3,
    consumer_account: LocalAccount,
    provider_private_key: str,
    ordered_token: publish.PublishedToken,
) -> None:
    # ERC20Template checks the fee's signature but not its validUntil: an order with an
    # expired fee succeeds, and only the provider (docs/protocol.md §5) can refuse it.
    fee = _fee(provider_private_key, ordered_token.datatoken_address, "svc", valid_for=-3600)
    dt = ordered_token.datatoken_address
    receipt = _start_order(w3, consumer_account, dt, fee)
    [logged] = decode_events(w3, "ERC20Template", "ProviderFee", receipt, dt)
    assert logged["validUntil"] == fee["validUntil"] < time.time()


def test_forged_fee_is_rejected_with_its_reason(
    w3: Web3,
    consumer_account: LocalAccount,
    provider_account: LocalAccount,
    ordered_token: publish.PublishedToken,
) -> None:
    from contracts_abi.devchain import DEV_ACCOUNTS

    # signed by the consumer's key, claiming to be the provider's fee
    fee = _fee(DEV_ACCOUNTS["consumer"], ordered_token.datatoken_address, "svc")
    fee["providerFeeAddress"] = provider_account.address
    with pytest.raises(TxFailed) as failure:
        _start_order(w3, consumer_account, ordered_token.datatoken_address, fee)
    assert failure.value.reason == "Invalid provider fee"


def test_tampered_fee_amount_is_rejected(
    w3: Web3,
    deployed: dict[str, Any],
    consumer_account: LocalAccount,
    provider_private_key: str,
    ordered_token: publish.PublishedToken,
) -> None:
    fee = _fee(
        provider_private_key, ordered_token.datatoken_address, "svc", token=deployed["Ocean"]
    )
    fee["providerFeeAmount"] = "1"  # signed for 0
    with pytest.raises(TxFailed, match="Invalid provider fee"):
        _start_order(w3, consumer_account, ordered_token.datatoken_address, fee, approve_fees=False)


def test_order_without_datatokens_reverts(
    w3: Web3,
    deployed: dict[str, Any],
    publisher_account: LocalAccount,
    other_account: LocalAccount,
    provider_private_key: str,
) -> None:
    token = _publish(w3, publisher_account, deployed, "Empty")
    fee = _fee(provider_private_key, token.datatoken_address, "svc")
    with pytest.raises(TxFailed) as failure:
        _start_order(w3, other_account, token.datatoken_address, fee)
    assert failure.value.reason

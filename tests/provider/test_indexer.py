"""The embedded indexer on the real chain: flags, hash check, state, cursor, catch-up."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from contracts_abi import contract, publish
from contracts_abi.tx import send
from datastore.engine import make_engine
from datastore.migrate import upgrade
from provider.assets import IndexerResolver
from provider.crypto import public_key_hex
from provider.indexer import Indexer
from tests.fixtures.publishing import new_dataset

pytestmark = pytest.mark.integration


def _asset(w3: Web3, publisher: LocalAccount, deployed: dict[str, Any]) -> tuple[Any, dict]:
    return new_dataset(w3, publisher, deployed, name="idx", symbol="IDX")


@pytest.mark.parametrize(
    ("compress", "encrypt"), [(False, False), (True, False), (False, True), (True, True)]
)
def test_indexes_every_flag_combination(
    indexer: Indexer,
    w3: Web3,
    deployed: dict[str, Any],
    publisher_account: LocalAccount,
    provider_private_key: str,
    compress: bool,
    encrypt: bool,
) -> None:
    token, ddo = _asset(w3, publisher_account, deployed)
    key = public_key_hex(provider_private_key) if encrypt else None
    publish.set_metadata(
        w3, publisher_account, token.nft_address, ddo, encrypt_for_public_key=key, compress=compress
    )
    found = IndexerResolver(indexer).resolve(token.did)  # a miss catches up on demand
    assert found is not None
    assert found.ddo["services"] == ddo["services"]
    assert found.nft_owner == publisher_account.address
    assert found.state == 0


def test_hash_mismatch_is_not_indexed(
    indexer: Indexer,
    w3: Web3,
    deployed: dict[str, Any],
    publisher_account: LocalAccount,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token, ddo = _asset(w3, publisher_account, deployed)
    nft = contract(w3, "ERC721Template", token.nft_address)
    plain = publish.ddo_bytes(ddo)
    wrong_hash = Web3.keccak(plain)  # not the sha256 of the DDO
    send(
        w3,
        publisher_account,
        nft.functions.setMetaData(0, "http://x", "", bytes([0]), plain, wrong_hash, []),
    )
    with caplog.at_level(logging.WARNING, logger="provider.indexer"):
        indexer.sync()
    assert indexer.get(token.did) is None
    assert "metaDataHash" in caplog.text


def test_state_updates_and_ddo_updates(
    indexer: Indexer, w3: Web3, deployed: dict[str, Any], publisher_account: LocalAccount
) -> None:
    token, ddo = _asset(w3, publisher_account, deployed)
    publish.set_metadata(w3, publisher_account, token.nft_address, ddo)
    indexer.sync()
    nft = contract(w3, "ERC721Template", token.nft_address)
    send(w3, publisher_account, nft.functions.setMetaDataState(3))
    indexer.sync()
    revoked = indexer.get(token.did)
    assert revoked is not None and revoked.state == 3
    ddo["metadata"]["name"] = "renamed"
    publish.set_metadata(w3, publisher_account, token.nft_address, ddo, state=0)
    indexer.sync()
    renamed = indexer.get(token.did)
    assert renamed is not None
    assert renamed.ddo["metadata"]["name"] == "renamed"
    assert renamed.state == 0


def test_cursor_persists_across_instances(
    indexer: Indexer, w3: Web3, deployed: dict[str, Any], publisher_account: LocalAccount
) -> None:
    token, ddo = _asset(w3, publisher_account, deployed)
    publish.set_metadata(w3, publisher_account, token.nft_address, ddo)
    head = indexer.sync()
    assert head >= w3.eth.block_number - 1
    again = Indexer(
        w3,
        indexer.db,
        factory=indexer.factory,
        chain_id=indexer.chain_id,
        private_key=indexer.private_key,
    )
    assert again.cursor() == head
    stored = again.get(token.did)
    assert stored is not None and json.dumps(stored.ddo["services"]) == json.dumps(ddo["services"])


def test_nft_from_another_factory_is_ignored(
    indexer: Indexer, w3: Web3, deployed: dict[str, Any], publisher_account: LocalAccount
) -> None:
    db = make_engine("sqlite://")
    upgrade(db)
    other = Indexer(
        w3,
        db,
        factory=publisher_account.address,  # no NFTs ever come from this "factory"
        chain_id=indexer.chain_id,
        private_key=None,
    )
    token, ddo = _asset(w3, publisher_account, deployed)
    publish.set_metadata(w3, publisher_account, token.nft_address, ddo)
    other.sync()
    assert other.get(token.did) is None

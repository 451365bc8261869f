"""The indexer resolver sees on-chain changes to an asset it has already served."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from contracts_abi import contract, publish
from contracts_abi.tx import send
from operator_engine.db import make_engine
from provider.assets import IndexerResolver
from provider.indexer import Indexer

pytestmark = pytest.mark.integration


def test_a_revocation_after_the_first_lookup_is_seen_by_the_next(
    tmp_path: Path,
    w3: Web3,
    deployed: dict[str, Any],
    publisher_account: LocalAccount,
    provider_private_key: str,
) -> None:
    indexer = Indexer(
        w3,
        make_engine(f"sqlite:///{tmp_path / 'services.db'}"),
        factory=deployed["ERC721Factory"],
        chain_id=w3.eth.chain_id,
        private_key=provider_private_key,
        start_block=int(deployed["startBlock"]),
    )
    resolver = IndexerResolver(indexer, max_age=0.0)
    token = publish.create_data_nft_with_datatoken(
        w3, publisher_account, deployed, name="fresh", symbol="FR"
    )
    ddo = publish.dataset_ddo(
        nft_address=token.nft_address,
        chain_id=w3.eth.chain_id,
        owner=publisher_account.address,
        datatoken_address=token.datatoken_address,
        files="0x00",
        service_endpoint="http://127.0.0.1:8030",
    )
    publish.set_metadata(w3, publisher_account, token.nft_address, ddo)
    first = resolver.resolve(token.did)
    assert first is not None and first.state == 0

    nft = contract(w3, "ERC721Template", token.nft_address)
    send(w3, publisher_account, nft.functions.setMetaDataState(3))
    revoked = resolver.resolve(token.did)
    assert revoked is not None and revoked.state == 3

"""The indexer resolver sees on-chain changes to an asset it has already served."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from contracts_abi import contract, publish
from contracts_abi.tx import send
from provider.assets import IndexerResolver
from provider.indexer import Indexer
from tests.fixtures.publishing import new_dataset

pytestmark = pytest.mark.integration


def test_a_revocation_after_the_first_lookup_is_seen_by_the_next(
    indexer: Indexer, w3: Web3, deployed: dict[str, Any], publisher_account: LocalAccount
) -> None:
    resolver = IndexerResolver(indexer, max_age=0.0)
    token, ddo = new_dataset(w3, publisher_account, deployed, name="fresh", symbol="FR")
    publish.set_metadata(w3, publisher_account, token.nft_address, ddo)
    first = resolver.resolve(token.did)
    assert first is not None and first.state == 0

    nft = contract(w3, "ERC721Template", token.nft_address)
    send(w3, publisher_account, nft.functions.setMetaDataState(3))
    revoked = resolver.resolve(token.did)
    assert revoked is not None and revoked.state == 3

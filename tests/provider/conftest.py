"""Fixtures shared by the provider suite's chain modules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from datastore.engine import make_engine
from datastore.migrate import upgrade
from provider.indexer import Indexer
from tests.fixtures.gateways import Gateways, gateways
from tests.provider.chainflow import Flow, open_flow


@pytest.fixture(autouse=True)
def _accounted_before_the_test() -> None:
    """Requests of earlier tests are accounted for (access lines, metrics) before this test's
    log capture starts: the accountant's queue belongs to the process, not to one app."""
    from provider import request_accounting

    request_accounting.flush()


@pytest.fixture(scope="module")
def flow(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    ganache: Any,
    w3: Web3,
    deployed: dict[str, Any],
    address_file: Path,
    provider_private_key: str,
    publisher_account: LocalAccount,
    consumer_account: LocalAccount,
    deployer_account: LocalAccount,
) -> Iterator[Flow]:
    """A provider app of its own for each module that asks (see ``open_flow``)."""
    with open_flow(
        tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]),
        ganache_url=ganache.url,
        w3=w3,
        deployed=deployed,
        address_file=address_file,
        provider_key=provider_private_key,
        publisher=publisher_account,
        consumer=consumer_account,
        deployer=deployer_account,
    ) as opened:
        yield opened


@pytest.fixture(scope="module")
def gw() -> Iterator[Gateways]:
    """Loopback IPFS/Arweave gateways and a GraphQL endpoint for the module."""
    with gateways() as server:
        yield server


@pytest.fixture(scope="module")
def gateway_flow(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    gw: Gateways,
    ganache: Any,
    w3: Web3,
    deployed: dict[str, Any],
    address_file: Path,
    provider_private_key: str,
    publisher_account: LocalAccount,
    consumer_account: LocalAccount,
    deployer_account: LocalAccount,
) -> Iterator[Flow]:
    """Like ``flow``, with IPFS_GATEWAY and ARWEAVE_GATEWAY pointing at ``gw``."""
    with open_flow(
        tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]),
        ganache_url=ganache.url,
        w3=w3,
        deployed=deployed,
        address_file=address_file,
        provider_key=provider_private_key,
        publisher=publisher_account,
        consumer=consumer_account,
        deployer=deployer_account,
        ipfs_gateway=gw.base_url,
        arweave_gateway=gw.base_url,
    ) as opened:
        yield opened


@pytest.fixture
def indexer(
    tmp_path: Path, w3: Web3, deployed: dict[str, Any], provider_private_key: str
) -> Indexer:
    """The provider's indexer on the session chain, from the stack's first block (its tables
    come from the store's migrations, as at every start)."""
    db = make_engine(f"sqlite:///{tmp_path / 'services.db'}")
    upgrade(db)
    return Indexer(
        w3,
        db,
        factory=deployed["ERC721Factory"],
        chain_id=w3.eth.chain_id,
        private_key=provider_private_key,
        start_block=int(deployed["startBlock"]),
    )

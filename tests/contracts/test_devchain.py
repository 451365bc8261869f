"""The ganache wrapper: accounts, start-up failures, clean stop."""

from __future__ import annotations

import socket

import pytest
import requests
from web3 import Web3

from contracts_abi.devchain import (
    CHAIN_ID,
    DEV_ACCOUNTS,
    DEV_BALANCE,
    Ganache,
    dev_account,
    rpc_chain_id,
)
from contracts_abi.errors import DevChainError


def test_dev_accounts_are_distinct_and_named() -> None:
    assert {"deployer", "publisher", "provider", "consumer", "other"} <= set(DEV_ACCOUNTS)
    addresses = {dev_account(name).address for name in DEV_ACCOUNTS}
    assert len(addresses) == len(DEV_ACCOUNTS)


@pytest.mark.integration
def test_session_chain_funds_every_dev_account(w3: Web3, ganache: Ganache) -> None:
    assert w3.eth.chain_id == CHAIN_ID == 8996
    for name in DEV_ACCOUNTS:
        assert w3.eth.get_balance(dev_account(name).address) > DEV_BALANCE // 2


@pytest.mark.integration
def test_ganache_stops_cleanly_and_reports_a_busy_port(ganache: Ganache) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        chain = Ganache(busy.getsockname()[1], start_timeout=30)
        with pytest.raises(DevChainError, match="ganache exited at start-up") as failure:
            chain.start()
        assert "\n" not in str(failure.value)
        assert not chain.running
    with Ganache() as chain:
        assert chain.running and rpc_chain_id(chain.url) == CHAIN_ID
        url = chain.url
    assert not chain.running
    with pytest.raises(requests.ConnectionError):
        rpc_chain_id(url, timeout=1.0)
    chain.stop()  # idempotent

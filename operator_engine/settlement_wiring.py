"""An engine's escrow settlement, wired from its config: the payee's chain handle is built on
first use, so an engine without a key or a chain starts (and its paid jobs wait at 71)."""

from __future__ import annotations

import requests
from sqlalchemy import Engine

from contracts_abi import escrow
from contracts_abi.escrow import EscrowChain
from operator_engine.config import EngineConfig
from operator_engine.settlement import Settlement


def default_settlement(config: EngineConfig, db: Engine) -> Settlement:
    """The settlement of an engine configured by ``config``. Its chain handle is built on
    first use from ``config.network_url`` (the first chain when NETWORK_URL names several),
    ``config.address_file`` (its ``Escrow``) and that chain's provider key (the payee);
    without a key every use raises :class:`~contracts_abi.escrow.EscrowUnavailable`
    (``escrow_not_configured``), so paid jobs wait at 71 instead of finishing unclaimed."""

    def build() -> EscrowChain:
        if not config.has_key:
            raise escrow.EscrowUnavailable(
                "escrow_not_configured",
                "PROVIDER_PRIVATE_KEY is not set: the escrow payee cannot lock or claim",
            )
        from eth_account import Account
        from web3 import Web3

        from contracts_abi.deploy import read_address_file
        from contracts_abi.errors import AddressFileError

        w3 = Web3(Web3.HTTPProvider(config.network_url, request_kwargs={"timeout": 30}))
        try:
            chain_id = int(w3.eth.chain_id)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise escrow.EscrowUnavailable(
                "chain_unavailable", f"the chain at {config.network_url} is unreachable"
            ) from exc
        try:
            addresses = read_address_file(config.address_file, chain_id)
        except AddressFileError as exc:
            raise escrow.EscrowUnavailable("escrow_not_deployed", str(exc)) from exc
        key = config.key_for(chain_id)  # a JSON PROVIDER_PRIVATE_KEY: that chain's own
        if key is None:
            raise escrow.EscrowUnavailable(
                "escrow_not_configured",
                f"PROVIDER_PRIVATE_KEY has no key for chain {chain_id}: the escrow payee "
                "cannot lock or claim there",
            )
        return EscrowChain.from_addresses(w3, addresses, Account.from_key(key))

    return Settlement(db, build)

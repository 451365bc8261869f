"""Provider-fee amounts (docs/protocol.md §4); signing is contracts_abi.fees' job.

amount = seconds until ``validUntil`` * priceMin / 60, in fee-token base units (priceMin is in
whole fee-token units per minute). Exact rational arithmetic, rounded down, any duration (the
reference wrapped at one day). Charged once per job: only the first dataset carries it.
"""

from __future__ import annotations

import functools
import time
from decimal import Decimal
from fractions import Fraction
from typing import Any

from web3 import Web3

from contracts_abi import fees as fee_format
from contracts_abi import load
from operator_engine.environments import FeeTokenRule
from operator_engine.models import ZERO_ADDRESS, ComputeEnvironment


def fee_amount(price_min: float | str, seconds: int, decimals: int) -> int:
    """Base units owed for ``seconds`` of compute at ``price_min`` tokens per minute.

    >>> fee_amount(1, 60, 18)
    1000000000000000000
    >>> fee_amount("0.5", 3 * 86400, 6)  # beyond one day: no wrap
    2160000000
    >>> fee_amount(0, 999, 18)
    0
    """
    if seconds <= 0:
        return 0
    # Fraction, not Decimal: exact at any size (Decimal's default context rounds at 28 digits)
    price = Fraction(Decimal(str(price_min)))
    if price <= 0:
        return 0
    return int(seconds * price * 10**decimals // 60)


@functools.lru_cache(maxsize=64)
def _decimals(w3_id: int, w3: Web3, token: str) -> int:
    contract = w3.eth.contract(
        address=Web3.to_checksum_address(token), abi=load("ERC20Template").abi
    )
    return int(contract.functions.decimals().call())


def token_decimals(w3: Web3 | None, token: str) -> int:
    """The fee token's ``decimals()`` read on-chain (18 for the zero address / no chain)."""
    if w3 is None or int(token, 16) == 0:
        return 18
    return _decimals(id(w3), w3, token)


def provider_fee(
    private_key: str,
    *,
    env: ComputeEnvironment,
    datatoken: str,
    service_id: str,
    valid_until: int,
    charge: bool,
    w3: Web3 | None,
    now: float | None = None,
) -> dict[str, Any]:
    """A signed providerFee for ``datatoken``'s service; amount 0 unless ``charge``."""
    moment = time.time() if now is None else now
    token = env.fee_token or ZERO_ADDRESS
    amount = 0
    if charge and float(env.price_min) > 0:
        amount = fee_amount(env.price_min, int(valid_until - moment), token_decimals(w3, token))
    data = fee_format.provider_data(env.id, datatoken, service_id, moment)
    return fee_format.sign_provider_fee(
        private_key,
        provider_data_hex=data,
        fee_token=token,
        amount=amount,
        valid_until=int(valid_until),
    )


def fee_token_rule(web3: Any, addresses: dict[str, Any], chain_id: int) -> FeeTokenRule:
    """The fee-token rule of chain ``chain_id``: default its address-file ``Ocean`` token,
    check code with ``web3``."""
    return FeeTokenRule(
        addresses.get("Ocean"), web3.eth.get_code, f"chain {chain_id}", chain_id=chain_id
    )

"""The payer's two calls on Ocean's ``Escrow`` contract: deposit and authorize (consumers use
them; here the tests, the demo and tools do). The payee's side is :mod:`contracts_abi.escrow`."""

from __future__ import annotations

from eth_account.signers.local import LocalAccount
from web3 import Web3

from contracts_abi.artifacts import contract
from contracts_abi.errors import ContractsError
from contracts_abi.escrow_state import translate_error
from contracts_abi.tx import send


def deposit(chain_w3: Web3, escrow: str, payer: LocalAccount, token: str, amount: int) -> None:
    """ERC-20 ``approve(escrow, amount)`` then ``deposit(token, amount)`` from ``payer``."""
    erc20 = contract(chain_w3, "ERC20Template", token)
    try:
        send(chain_w3, payer, erc20.functions.approve(Web3.to_checksum_address(escrow), amount))
        send(
            chain_w3,
            payer,
            contract(chain_w3, "Escrow", escrow).functions.deposit(
                Web3.to_checksum_address(token), amount
            ),
        )
    except ContractsError as exc:
        raise translate_error(exc) from exc


def authorize(
    chain_w3: Web3,
    escrow: str,
    payer: LocalAccount,
    token: str,
    payee: str,
    max_locked_amount: int,
    max_lock_seconds: int,
    max_lock_counts: int,
) -> None:
    """``authorize(token, payee, maxLockedAmount, maxLockSeconds, maxLockCounts)`` from
    ``payer`` (replaces an existing authorization of that payee)."""
    fn = contract(chain_w3, "Escrow", escrow).functions.authorize(
        Web3.to_checksum_address(token),
        Web3.to_checksum_address(payee),
        max_locked_amount,
        max_lock_seconds,
        max_lock_counts,
    )
    try:
        send(chain_w3, payer, fn)
    except ContractsError as exc:
        raise translate_error(exc) from exc

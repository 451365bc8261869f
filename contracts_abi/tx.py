"""Send transactions the fast, explicit way: ``eth_call`` first, then a fixed gas limit.

``eth_estimateGas`` is slow on ganache (~0.3 s per call), so we never use it. Instead a dry run
with ``eth_call`` surfaces the revert reason before anything is signed, and the real
transaction carries a fixed gas limit (only the gas used is paid). Transactions are legacy
(type 0) with the node's ``eth_gasPrice``, which every node and hardfork accepts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests
from eth_abi.abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError, TimeExhausted, Web3RPCError
from web3.types import TxParams, TxReceipt

from contracts_abi.artifacts import load
from contracts_abi.errors import ChainUnavailable, TxFailed

#: Gas limit of an ordinary call (orders, minting, metadata, NFT creation).
DEFAULT_GAS = 3_000_000
#: Gas limit of a contract creation (the largest Ocean template needs ~5.5 M).
DEPLOY_GAS = 8_000_000
#: Seconds to wait for a receipt (blocks are instant on the dev chain).
RECEIPT_TIMEOUT = 60.0

_ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
_PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)
_REASON_PREFIXES = (
    "execution reverted: ",
    "execution reverted",
    "VM Exception while processing transaction: revert ",
    "VM Exception while processing transaction: ",
)

#: Broadcast attempts when the node refuses the nonce (another process sent from the account).
NONCE_ATTEMPTS = 3

_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


@contextmanager
def _nonce_lock(address: str) -> Iterator[None]:
    # Two threads of one process sending from one account must not pick the same nonce.
    with _locks_guard:
        lock = _locks.setdefault(address.lower(), threading.Lock())
    with lock:
        yield


def _decode_revert_data(data: object) -> str | None:
    if not isinstance(data, str) or not data.startswith("0x"):
        return None
    raw = bytes.fromhex(data[2:]) if len(data) % 2 == 0 else b""
    if raw[:4] == _ERROR_SELECTOR:
        try:
            return str(abi_decode(["string"], raw[4:])[0])
        except Exception:  # malformed payload: fall back to the node's message
            return None
    if raw[:4] == _PANIC_SELECTOR and len(raw) >= 36:
        return f"panic 0x{int.from_bytes(raw[4:36], 'big'):02x}"
    return None


def _reason(exc: Exception) -> str:
    """The revert reason in ``exc`` (a web3 error), without the node's boilerplate."""
    error = getattr(exc, "rpc_response", None)
    error = error.get("error") if isinstance(error, dict) else None
    data = getattr(exc, "data", None)
    message: object = getattr(exc, "message", None)
    if isinstance(error, dict):
        data = data or error.get("data")
        message = error.get("message", message)
    if isinstance(data, dict):  # some nodes nest {"data": "0x…"}
        data = data.get("data") or data.get("result")
    decoded = _decode_revert_data(data)
    if decoded:
        return decoded
    text = str(message or (exc.args[0] if exc.args else exc))
    for prefix in _REASON_PREFIXES:
        if text.startswith(prefix):
            return text[len(prefix) :].strip() or "reverted without a reason"
    return text


def _is_nonce_clash(exc: Exception) -> bool:
    text = _reason(exc).lower()
    return "nonce" in text or "already known" in text or "underpriced" in text


def _dry_run(w3: Web3, tx: TxParams) -> None:
    call: TxParams = {k: v for k, v in tx.items() if k in ("from", "to", "data", "value", "gas")}  # type: ignore[assignment]
    try:
        w3.eth.call(call)
    except ContractLogicError as exc:
        raise TxFailed(_reason(exc)) from exc
    except Web3RPCError as exc:
        raise TxFailed(_reason(exc)) from exc
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise ChainUnavailable(f"chain RPC unreachable: {exc}") from exc


def _sign_send_wait(
    w3: Web3,
    account: LocalAccount,
    tx: dict[str, Any],
    timeout: float,
    on_signed: Callable[[str], object] | None = None,
) -> TxReceipt:
    try:
        _dry_run(w3, tx)  # type: ignore[arg-type]
        with _nonce_lock(account.address):
            for attempt in range(1, NONCE_ATTEMPTS + 1):
                tx["nonce"] = w3.eth.get_transaction_count(account.address, "pending")
                signed = account.sign_transaction(tx)
                if on_signed is not None:
                    on_signed(HexBytes(signed.hash).to_0x_hex())
                try:
                    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
                    break
                except Web3RPCError as exc:
                    # another process sent from this account in between: take the next nonce
                    if attempt == NONCE_ATTEMPTS or not _is_nonce_clash(exc):
                        raise
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout, poll_latency=0.05)
    except TimeExhausted as exc:
        raise TxFailed(f"no receipt within {timeout:g} s") from exc
    except Web3RPCError as exc:
        raise TxFailed(_reason(exc)) from exc
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise ChainUnavailable(f"chain RPC unreachable: {exc}") from exc
    if receipt["status"] != 1:
        raise TxFailed(
            "status 0 (reverted after the dry run passed)", HexBytes(tx_hash).to_0x_hex()
        )
    return receipt


def _base_tx(w3: Web3, account: LocalAccount, value: int, gas: int) -> dict[str, Any]:
    try:
        return {
            "from": account.address,
            "value": value,
            "gas": gas,
            "gasPrice": w3.eth.gas_price,
            "chainId": w3.eth.chain_id,
            "nonce": 0,  # replaced under the nonce lock
        }
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise ChainUnavailable(f"chain RPC unreachable: {exc}") from exc


def send(
    w3: Web3,
    account: LocalAccount,
    fn: ContractFunction,
    *,
    value: int = 0,
    gas: int = DEFAULT_GAS,
    timeout: float = RECEIPT_TIMEOUT,
    on_signed: Callable[[str], object] | None = None,
) -> TxReceipt:
    """Call ``fn`` (a bound contract function) from ``account`` and return the receipt.

    Raises :class:`TxFailed` with the revert reason when the dry run reverts, when no receipt
    arrives within ``timeout`` seconds, or when the mined transaction has status 0.
    ``on_signed(tx_hash)`` runs after signing and before broadcasting (to record the hash
    durably first); an exception it raises aborts the send.
    """
    tx = fn.build_transaction(_base_tx(w3, account, value, gas))  # type: ignore[arg-type]
    return _sign_send_wait(w3, account, dict(tx), timeout, on_signed)


def transfer_eth(
    w3: Web3, account: LocalAccount, to: str, value: int, *, timeout: float = RECEIPT_TIMEOUT
) -> TxReceipt:
    """Send ``value`` wei from ``account`` to ``to`` (a plain transfer, 21,000 gas)."""
    tx = _base_tx(w3, account, value, 21_000)
    tx["to"] = Web3.to_checksum_address(to)
    return _sign_send_wait(w3, account, tx, timeout)


def deploy(
    w3: Web3,
    account: LocalAccount,
    artifact_name: str,
    *args: Any,
    gas: int = DEPLOY_GAS,
    timeout: float = RECEIPT_TIMEOUT,
) -> str:
    """Deploy the ``artifact_name`` contract with constructor ``args``; return its address."""
    art = load(artifact_name)
    factory = w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
    tx = factory.constructor(*args).build_transaction(_base_tx(w3, account, 0, gas))
    tx = dict(tx)
    tx.pop("to", None)
    try:
        receipt = _sign_send_wait(w3, account, tx, timeout)
    except TxFailed as exc:
        raise TxFailed(f"deploying {artifact_name}: {exc.reason}", exc.tx_hash) from exc
    address = receipt["contractAddress"]
    if not address:
        raise TxFailed(f"deploying {artifact_name}: the receipt has no contract address")
    return Web3.to_checksum_address(address)

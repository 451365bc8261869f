"""Publishing helpers: data NFT + datatoken, on-chain DDOs, minting and orders (building the
DDOs themselves: :mod:`contracts_abi.ddo`, whose names stay importable from here).

Used by the tests, the demo and the provider's integration tests. Every transaction goes
through :func:`contracts_abi.tx.send` (dry run, fixed gas, receipt with a timeout).
"""

from __future__ import annotations

import hashlib
import json
import lzma
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import ecies
from coincurve import PublicKey
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3
from web3.types import TxReceipt

from contracts_abi.artifacts import contract
from contracts_abi.ddo import (
    DDO_VERSION,
    algorithm_ddo,
    dataset_ddo,
    default_service_id,
    files_payload,
    trusted_algorithm,
)
from contracts_abi.did import compute_did
from contracts_abi.errors import ContractsError
from contracts_abi.events import decode_events
from contracts_abi.tx import send

__all__ = [
    "DDO_VERSION",
    "FLAG_COMPRESSED",
    "FLAG_ENCRYPTED",
    "PublishedToken",
    "algorithm_ddo",
    "approve",
    "create_data_nft_with_datatoken",
    "dataset_ddo",
    "ddo_bytes",
    "default_service_id",
    "encrypt_files_locally",
    "encrypt_for",
    "files_payload",
    "mint",
    "public_key_address",
    "reuse_order",
    "set_metadata",
    "start_order",
    "transfer",
    "trusted_algorithm",
    "unix_now",
]

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
#: ``setMetaData`` flags: bit 0 = lzma-compressed, bit 1 = ECIES-encrypted for the provider.
FLAG_COMPRESSED = 1
FLAG_ENCRYPTED = 2
DEFAULT_CAP = 2**256 - 1
DEFAULT_DECRYPTOR_URL = "http://127.0.0.1:8030"


@dataclass(frozen=True)
class PublishedToken:
    """What ``createNftWithErc20`` produced."""

    nft_address: str
    datatoken_address: str
    did: str
    tx: str


def _checksum(address: str) -> str:
    return Web3.to_checksum_address(address)


def create_data_nft_with_datatoken(
    w3: Web3,
    publisher: LocalAccount,
    addresses: Mapping[str, Any],
    *,
    name: str,
    symbol: str,
    minter: str | None = None,
    fee_address: str | None = None,
    payment_collector: str | None = None,
    datatoken_name: str | None = None,
    datatoken_symbol: str | None = None,
    template_index: int = 1,
    cap: int = DEFAULT_CAP,
    token_uri: str = "https://oceanprotocol.com/nft/",
    transferable: bool = True,
) -> PublishedToken:
    """Create a data NFT owned by ``publisher`` and its first datatoken in one transaction.

    ``minter`` (default: the publisher) may mint the datatoken; ``payment_collector``
    (default: the publisher) receives the datatokens orders spend; ``fee_address`` is the
    publish-market fee collector (default: the publisher; the fee itself is 0).
    """
    factory_address = addresses["ERC721Factory"]
    factory = contract(w3, "ERC721Factory", factory_address)
    me = publisher.address
    nft_data = (name, symbol, 1, token_uri, transferable, me)
    erc_data: tuple[Any, ...] = (
        template_index,
        [datatoken_name or f"{name} Datatoken", datatoken_symbol or f"{symbol}-DT"],
        [
            _checksum(minter or me),
            _checksum(payment_collector or me),
            _checksum(fee_address or me),
            ZERO_ADDRESS,
        ],
        [cap, 0],
        [],
    )
    receipt = send(w3, publisher, factory.functions.createNftWithErc20(nft_data, erc_data))
    nfts = decode_events(w3, "ERC721Factory", "NFTCreated", receipt, factory_address)
    tokens = decode_events(w3, "ERC721Factory", "TokenCreated", receipt, factory_address)
    if not nfts or not tokens:
        raise ContractsError("createNftWithErc20 emitted no NFTCreated/TokenCreated event")
    nft_address = _checksum(nfts[0]["newTokenAddress"])
    return PublishedToken(
        nft_address=nft_address,
        datatoken_address=_checksum(tokens[0]["newTokenAddress"]),
        did=compute_did(nft_address, w3.eth.chain_id),
        tx=HexBytes(receipt["transactionHash"]).to_0x_hex(),
    )


def ddo_bytes(ddo: Mapping[str, Any]) -> bytes:
    """The plain DDO bytes stored on-chain and hashed into ``metaDataHash`` (compact JSON)."""
    return json.dumps(ddo, separators=(",", ":")).encode("utf-8")


def _public_key_bytes(public_key: bytes | str) -> bytes:
    raw = HexBytes(public_key) if isinstance(public_key, str) else bytes(public_key)
    if len(raw) == 64:  # bare x‖y, as eth-keys prints it
        raw = b"\x04" + raw
    return PublicKey(raw).format(compressed=False)


def public_key_address(public_key: bytes | str) -> str:
    """The checksummed Ethereum address of a secp256k1 public key (64, 65 or 33 bytes)."""
    uncompressed = _public_key_bytes(public_key)
    return _checksum(Web3.keccak(uncompressed[1:])[-20:].hex())


def encrypt_for(public_key: bytes | str, data: bytes) -> bytes:
    """ECIES-encrypt ``data`` for ``public_key`` (65-byte ephemeral key ‖ nonce ‖ tag ‖ ct)."""
    return bytes(ecies.encrypt(_public_key_bytes(public_key), data))


def encrypt_files_locally(public_key: bytes | str, payload: Mapping[str, Any] | bytes | str) -> str:
    """Encrypt a files payload the way the provider's encrypt endpoint does; return ``0x…``.

    ``payload`` is ``{"datatokenAddress", "nftAddress", "files": [...]}`` (compact JSON is
    encrypted) or already-serialised text/bytes.
    """
    if isinstance(payload, Mapping):
        data = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    elif isinstance(payload, str):
        data = payload.encode("utf-8")
    else:
        data = bytes(payload)
    return "0x" + encrypt_for(public_key, data).hex()


def set_metadata(
    w3: Web3,
    publisher: LocalAccount,
    nft_address: str,
    ddo: Mapping[str, Any],
    *,
    encrypt_for_public_key: bytes | str | None = None,
    compress: bool = False,
    state: int = 0,
    decryptor_url: str = DEFAULT_DECRYPTOR_URL,
    decryptor_address: str | None = None,
    encryptor: Callable[[bytes], bytes] | None = None,
) -> TxReceipt:
    """Store ``ddo`` on the data NFT with ``setMetaData``; return the receipt.

    The plain bytes are lzma-compressed when ``compress`` (flag bit 0), then encrypted (flag
    bit 1; the on-chain data is the raw ciphertext) either by ``encryptor`` (as ocean.py does,
    through the provider's encrypt endpoint; pass ``decryptor_address`` with it) or locally with
    ECIES for ``encrypt_for_public_key``. ``metaDataHash`` is sha256 of the plain bytes;
    ``metadataProofs`` is empty. ``decryptor_address`` defaults to the address of the key.
    """
    plain = ddo_bytes(ddo)
    data, flags = plain, 0
    if compress:
        data, flags = lzma.compress(data), flags | FLAG_COMPRESSED
    if encryptor is not None:
        data, flags = encryptor(data), flags | FLAG_ENCRYPTED
    elif encrypt_for_public_key is not None:
        data, flags = encrypt_for(encrypt_for_public_key, data), flags | FLAG_ENCRYPTED
        if decryptor_address is None:
            decryptor_address = public_key_address(encrypt_for_public_key)
    nft = contract(w3, "ERC721Template", nft_address)
    fn = nft.functions.setMetaData(
        state,
        decryptor_url,
        decryptor_address or "",
        bytes([flags]),
        data,
        hashlib.sha256(plain).digest(),
        [],
    )
    return send(w3, publisher, fn)


def mint(w3: Web3, minter: LocalAccount, datatoken: str, to: str, amount_wei: int) -> TxReceipt:
    """Mint ``amount_wei`` datatoken base units to ``to`` (``minter`` needs the minter role)."""
    token = contract(w3, "ERC20Template", datatoken)
    return send(w3, minter, token.functions.mint(_checksum(to), int(amount_wei)))


def transfer(w3: Web3, sender: LocalAccount, token: str, to: str, amount_wei: int) -> TxReceipt:
    """Transfer an ERC20 (Ocean, a datatoken…) from ``sender`` to ``to``."""
    erc20 = contract(w3, "ERC20Template", token)
    return send(w3, sender, erc20.functions.transfer(_checksum(to), int(amount_wei)))


def approve(w3: Web3, owner: LocalAccount, token: str, spender: str, amount_wei: int) -> TxReceipt:
    """Let ``spender`` move ``amount_wei`` of ``owner``'s ``token``."""
    erc20 = contract(w3, "ERC20Template", token)
    return send(w3, owner, erc20.functions.approve(_checksum(spender), int(amount_wei)))


def _fee_tuple(fee: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        _checksum(fee["providerFeeAddress"]),
        _checksum(fee["providerFeeToken"]),
        int(fee["providerFeeAmount"]),
        int(fee["v"]),
        HexBytes(fee["r"]),
        HexBytes(fee["s"]),
        int(fee["validUntil"]),
        HexBytes(fee["providerData"]),
    )


def _approve_fee(w3: Web3, payer: LocalAccount, datatoken: str, fee: Mapping[str, Any]) -> None:
    amount = int(fee["providerFeeAmount"])
    token = fee["providerFeeToken"]
    if amount == 0 or int(token, 16) == 0:
        return
    erc20 = contract(w3, "ERC20Template", token)
    if erc20.functions.allowance(payer.address, _checksum(datatoken)).call() < amount:
        approve(w3, payer, token, datatoken, amount)


def start_order(
    w3: Web3,
    consumer: LocalAccount,
    datatoken: str,
    *,
    consumer_address: str,
    service_index: int,
    provider_fee: Mapping[str, Any],
    consume_market_fee: tuple[str, str, int] = (ZERO_ADDRESS, ZERO_ADDRESS, 0),
    approve_fees: bool = True,
) -> TxReceipt:
    """``startOrder`` paid by ``consumer`` (spends 1 datatoken) naming ``consumer_address``.

    With ``approve_fees``, first approves the datatoken to pull a non-zero provider fee.
    """
    if approve_fees:
        _approve_fee(w3, consumer, datatoken, provider_fee)
    token = contract(w3, "ERC20Template", datatoken)
    fn = token.functions.startOrder(
        _checksum(consumer_address),
        int(service_index),
        _fee_tuple(provider_fee),
        (_checksum(consume_market_fee[0]), _checksum(consume_market_fee[1]), consume_market_fee[2]),
    )
    return send(w3, consumer, fn)


def reuse_order(
    w3: Web3,
    consumer: LocalAccount,
    datatoken: str,
    *,
    order_tx_id: str | bytes,
    provider_fee: Mapping[str, Any],
    approve_fees: bool = True,
) -> TxReceipt:
    """``reuseOrder``: pay a fresh provider fee for the existing order ``order_tx_id``."""
    if approve_fees:
        _approve_fee(w3, consumer, datatoken, provider_fee)
    token = contract(w3, "ERC20Template", datatoken)
    fn = token.functions.reuseOrder(HexBytes(order_tx_id), _fee_tuple(provider_fee))
    return send(w3, consumer, fn)


def unix_now() -> int:
    """Current Unix time in whole seconds (fee ``validUntil`` arithmetic)."""
    return int(time.time())

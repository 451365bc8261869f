"""On-chain order validation (docs/protocol.md §5), with tidewater's fixes over the reference.

Rules, in order: the asset's data NFT deployed the datatoken (``isDeployed``); the receipt is
fetched with a bounded wait (unknown tx → error in well under 2 s); the tx succeeded; only logs
emitted by that datatoken count; the last ``ProviderFee`` log for (dt, service id) names the
requested environment, this provider as ``providerFeeAddress``, verifies with this provider's
key and (compute datasets) has not expired; ``OrderReused`` redirects to the original order; the
last ``OrderStarted`` has ``serviceIndex`` == the service's position, ``amount`` ≥ 1e18 and is
younger than the service ``timeout``; the requester is the order's consumer or payer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import TimeExhausted, TransactionNotFound, Web3Exception

from contracts_abi import fees as fee_format
from contracts_abi import load

ONE_TOKEN = 10**18


class OrderError(Exception):
    """The order does not entitle the requester to the service; ``str()`` says why."""


class OrderNotFound(OrderError):
    """No mined transaction with that id (within the bounded wait)."""


class OrderFailed(OrderError):
    """The transaction reverted."""


class NotDeployed(OrderError):
    """The datatoken was not deployed by the asset's data NFT."""


class ProviderFeeInvalid(OrderError):
    """No matching ProviderFee log, wrong environment/address/signature."""


class OrderExpired(OrderError):
    """The provider fee's validUntil or the service timeout has passed."""


class OrderMismatch(OrderError):
    """No matching OrderStarted, wrong service index, amount too low, or wrong requester."""


@dataclass(frozen=True)
class Order:
    """A validated order: the tx the client gave and the tx that started it."""

    tx_id: str
    start_tx_id: str
    consumer: str
    payer: str
    amount: int
    service_index: int
    timestamp: int
    provider_fee: dict[str, Any]


def _tx_hex(value: Any) -> str:
    return "0x" + bytes(HexBytes(value)).hex()


def receipt(w3: Web3, tx_id: str, timeout: float = 1.5) -> Any:
    """The receipt of ``tx_id``, waiting at most ``timeout`` s for a pending tx."""
    try:
        tx_hash = HexBytes(tx_id)
    except (TypeError, ValueError):
        raise OrderNotFound(f"transferTxId {tx_id!r} is not a transaction hash") from None
    if len(tx_hash) != 32:
        raise OrderNotFound(f"transferTxId {tx_id!r} is not a 32-byte transaction hash")
    try:
        return w3.eth.get_transaction_receipt(tx_hash)
    except TransactionNotFound:
        pass
    try:
        w3.eth.get_transaction(tx_hash)  # pending txs are worth a short wait, unknown ones not
    except TransactionNotFound:
        raise OrderNotFound(f"transaction {_tx_hex(tx_hash)} not found on chain") from None
    try:
        return w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout, poll_latency=0.1)
    except (TimeExhausted, TransactionNotFound):
        raise OrderNotFound(f"transaction {_tx_hex(tx_hash)} is not mined") from None


def chain_now(w3: Web3) -> int:
    """The later of wall-clock time and the latest block's timestamp."""
    return max(int(time.time()), int(w3.eth.get_block("latest")["timestamp"]))


class OrderValidator:
    """Checks orders on ``w3`` for the provider ``provider_address``."""

    def __init__(self, w3: Web3, provider_address: str, *, receipt_timeout: float = 1.5) -> None:
        self.w3 = w3
        self.provider_address = Web3.to_checksum_address(provider_address)
        self.receipt_timeout = receipt_timeout
        self._dt = w3.eth.contract(abi=load("ERC20Template").abi)
        self._nft_abi = load("ERC721Template").abi

    def _events(self, rcpt: Any, datatoken: str, name: str) -> list[Any]:
        event = getattr(self._dt.events, name)()
        topic = HexBytes(
            Web3.keccak(text=f"{name}({','.join(i['type'] for i in event.abi['inputs'])})")
        )
        found = []
        for entry in rcpt["logs"]:
            if entry["address"].lower() != datatoken.lower():
                continue  # a same-shaped event from another contract proves nothing
            if not entry["topics"] or HexBytes(entry["topics"][0]) != topic:
                continue
            found.append(event.process_log(entry))
        return found

    def is_deployed(self, nft_address: str, datatoken: str) -> bool:
        nft = self.w3.eth.contract(address=Web3.to_checksum_address(nft_address), abi=self._nft_abi)
        try:
            return bool(nft.functions.isDeployed(Web3.to_checksum_address(datatoken)).call())
        except (Web3Exception, ValueError):
            return False

    def validate(
        self,
        *,
        tx_id: str,
        requester: str,
        nft_address: str,
        datatoken: str,
        service_id: str,
        service_index: int,
        service_timeout: int = 0,
        environment: str | None = None,
        check_valid_until: bool = True,
        expiry_optional: bool = False,
    ) -> Order:
        """Validate ``tx_id`` as ``requester``'s order of the service; raise OrderError.

        ``expiry_optional``: a fee ``validUntil`` of 0 never expires (access-service fees for a
        service without timeout); compute fees always carry one.
        """
        if not self.is_deployed(nft_address, datatoken):
            raise NotDeployed(f"datatoken {datatoken} was not deployed by {nft_address}")
        rcpt = receipt(self.w3, tx_id, self.receipt_timeout)
        if int(rcpt["status"]) != 1:
            raise OrderFailed(f"transaction {tx_id} failed")
        now = chain_now(self.w3)
        fee = self._provider_fee(rcpt, datatoken, service_id, environment)
        no_expiry = expiry_optional and int(fee["validUntil"]) == 0
        if check_valid_until and not no_expiry and int(fee["validUntil"]) <= now:
            raise OrderExpired("the provider fee has expired (validUntil passed)")
        start = rcpt
        reused = self._events(rcpt, datatoken, "OrderReused")
        if reused:
            original = _tx_hex(reused[-1]["args"]["orderTxId"])
            start = receipt(self.w3, original, self.receipt_timeout)
            if int(start["status"]) != 1:
                raise OrderFailed(f"reused order {original} failed")
        started = self._events(start, datatoken, "OrderStarted")
        if not started:
            raise OrderMismatch("no OrderStarted event from the datatoken in this transaction")
        args = started[-1]["args"]
        if int(args["serviceIndex"]) != service_index:
            raise OrderMismatch(
                f"order is for service index {args['serviceIndex']}, not {service_index}"
            )
        if int(args["amount"]) < ONE_TOKEN:
            raise OrderMismatch("order amount is below one datatoken")
        if service_timeout and int(args["timestamp"]) + int(service_timeout) < now:
            raise OrderExpired("the order is older than the service timeout")
        if requester.lower() not in {args["consumer"].lower(), args["payer"].lower()}:
            raise OrderMismatch("the requester is neither the order's consumer nor its payer")
        return Order(
            tx_id=_tx_hex(rcpt["transactionHash"]),
            start_tx_id=_tx_hex(start["transactionHash"]),
            consumer=args["consumer"],
            payer=args["payer"],
            amount=int(args["amount"]),
            service_index=int(args["serviceIndex"]),
            timestamp=int(args["timestamp"]),
            provider_fee=fee,
        )

    def _provider_fee(
        self, rcpt: Any, datatoken: str, service_id: str, environment: str | None
    ) -> dict[str, Any]:
        for event in reversed(self._events(rcpt, datatoken, "ProviderFee")):
            args = event["args"]
            try:
                data = fee_format.decode_provider_data(args["providerData"])
            except ValueError:
                continue
            if str(data.get("dt", "")).lower() != datatoken.lower():
                continue
            if data.get("id") != service_id:
                continue
            fee = {
                "providerFeeAddress": args["providerFeeAddress"],
                "providerFeeToken": args["providerFeeToken"],
                "providerFeeAmount": int(args["providerFeeAmount"]),
                "providerData": _tx_hex(args["providerData"]),
                "v": int(args["v"]),
                "r": _tx_hex(args["r"]),
                "s": _tx_hex(args["s"]),
                "validUntil": int(args["validUntil"]),
                "environment": data.get("environment"),
            }
            if environment is not None and data.get("environment") != environment:
                raise ProviderFeeInvalid("the provider fee is for another compute environment")
            if fee["providerFeeAddress"].lower() != self.provider_address.lower():
                raise ProviderFeeInvalid("the provider fee was not issued to this provider")
            if not fee_format.is_signed_by(fee, self.provider_address):
                raise ProviderFeeInvalid("the provider fee is not signed by this provider")
            return fee
        raise ProviderFeeInvalid("no provider fee for this datatoken and service in the tx")

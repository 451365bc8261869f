"""Decode the Ocean events tidewater reads from transaction receipts."""

from __future__ import annotations

from typing import Any

from web3 import Web3
from web3.logs import DISCARD
from web3.types import TxReceipt

from contracts_abi.artifacts import load


def decode_events(
    w3: Web3,
    artifact_name: str,
    event_name: str,
    receipt: TxReceipt,
    address: str | None = None,
) -> list[dict[str, Any]]:
    """Every ``event_name`` log (ABI of ``artifact_name``) in ``receipt``, as plain dicts.

    With ``address``, only logs emitted by that contract count — never trust a same-shaped
    event from another contract. Each dict has the event's arguments plus ``address``,
    ``logIndex`` and ``blockNumber``.
    """
    events = w3.eth.contract(abi=load(artifact_name).abi).events[event_name]()
    wanted = address.lower() if address else None
    found = []
    for event in events.process_receipt(receipt, errors=DISCARD):
        if wanted and event["address"].lower() != wanted:
            continue
        found.append(
            {
                **dict(event["args"]),
                "address": Web3.to_checksum_address(event["address"]),
                "logIndex": event["logIndex"],
                "blockNumber": event["blockNumber"],
            }
        )
    return found

"""The provider-fee wire format (docs/protocol.md §4): the one place that builds, signs and
checks it.

A provider fee travels as ``{providerFeeAddress, providerFeeToken, providerFeeAmount,
providerData, v, r, s, validUntil}``. ``providerData`` is the 0x-hex of compact JSON
``{"environment", "timestamp", "dt", "id"}``. The provider signs
``keccak256(abi.encodePacked(bytes providerData, address feeAddress, address feeToken,
uint256 amount, uint256 validUntil))`` with the EIP-191 32-byte prefix, exactly what the
datatoken's ``startOrder`` / ``reuseOrder`` recover on-chain. All functions are pure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from eth_account import Account
from eth_account.messages import encode_defunct
from hexbytes import HexBytes
from web3 import Web3

UINT256_MAX = 2**256 - 1


class FeeOutOfRange(ValueError):
    """An amount or validUntil outside uint256: no order could carry that fee."""


#: The keys of a providerFee object, in the order clients show them.
FEE_FIELDS = (
    "providerFeeAddress",
    "providerFeeToken",
    "providerFeeAmount",
    "providerData",
    "v",
    "r",
    "s",
    "validUntil",
)


def provider_data(
    environment: str | None, datatoken: str, service_id: str, timestamp: float
) -> str:
    """The 0x-hex providerData for a fee on ``datatoken``'s service ``service_id``
    (``environment`` None for an access service).

    >>> provider_data("env1", "0xdt", "svc", 1700000000.5)
    '0x7b22656e7669726f6e6d656e74223a22656e7631222c2274696d657374616d70223a313730303030303030302e352c226474223a2230786474222c226964223a22737663227d'
    >>> decode_provider_data(_)["timestamp"]
    1700000000.5
    """
    document = {
        "environment": environment,
        "timestamp": timestamp,
        "dt": datatoken,
        "id": service_id,
    }
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    return "0x" + text.encode("utf-8").hex()


def decode_provider_data(data_hex: str | bytes) -> dict[str, Any]:
    """The JSON object inside a providerData (0x-hex text or raw bytes).

    Raises :class:`ValueError` when it is not hex of a UTF-8 JSON object.
    """
    try:
        raw = bytes(data_hex) if isinstance(data_hex, bytes | bytearray) else HexBytes(data_hex)
        value = json.loads(raw.decode("utf-8"))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"providerData is not hex of a UTF-8 JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("providerData is not hex of a JSON object")
    return value


def provider_fee_hash(
    provider_data_hex: str | bytes,
    fee_address: str,
    fee_token: str,
    amount: int,
    valid_until: int,
) -> bytes:
    """keccak256(abi.encodePacked(bytes, address, address, uint256, uint256)) of a fee."""
    return bytes(
        Web3.solidity_keccak(
            ["bytes", "address", "address", "uint256", "uint256"],
            [
                HexBytes(provider_data_hex),
                Web3.to_checksum_address(fee_address),
                Web3.to_checksum_address(fee_token),
                int(amount),
                int(valid_until),
            ],
        )
    )


def _hex32(value: int) -> str:
    return "0x" + value.to_bytes(32, "big").hex()


def sign_provider_fee(
    private_key: str | bytes,
    *,
    provider_data_hex: str,
    fee_token: str,
    amount: int,
    valid_until: int,
) -> dict[str, Any]:
    """Sign a provider fee with ``private_key``; return the providerFee wire object.

    ``providerFeeAddress`` is the key's address; ``providerFeeAmount`` a decimal string;
    ``v`` 27 or 28; ``r`` / ``s`` 0x + 32 bytes; ``validUntil`` an int.
    """
    account = Account.from_key(private_key)
    for name, value in (("providerFeeAmount", amount), ("validUntil", valid_until)):
        if not 0 <= int(value) <= UINT256_MAX:
            raise FeeOutOfRange(f"{name} {value} does not fit a uint256")
    digest = provider_fee_hash(
        provider_data_hex, account.address, fee_token, int(amount), int(valid_until)
    )
    signed = account.sign_message(encode_defunct(primitive=digest))
    return {
        "providerFeeAddress": account.address,
        "providerFeeToken": Web3.to_checksum_address(fee_token),
        "providerFeeAmount": str(int(amount)),
        "providerData": "0x" + HexBytes(provider_data_hex).hex().removeprefix("0x"),
        "v": int(signed.v),
        "r": _hex32(signed.r),
        "s": _hex32(signed.s),
        "validUntil": int(valid_until),
    }


def recover_provider_fee_signer(fee: Mapping[str, Any]) -> str:
    """The checksummed address that signed ``fee`` (a providerFee dict or the event's fields).

    Accepts ``v`` as 0/1 or 27/28 and ``r`` / ``s`` as hex or bytes. Raises
    :class:`ValueError` for a malformed fee.
    """
    try:
        digest = provider_fee_hash(
            fee["providerData"],
            fee["providerFeeAddress"],
            fee["providerFeeToken"],
            int(fee["providerFeeAmount"]),
            int(fee["validUntil"]),
        )
        v = int(fee["v"])
        v = v + 27 if v in (0, 1) else v
        r = int.from_bytes(HexBytes(fee["r"]), "big")
        s = int.from_bytes(HexBytes(fee["s"]), "big")
        signer = Account.recover_message(encode_defunct(primitive=digest), vrs=(v, r, s))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed provider fee: {exc}") from None
    except Exception as exc:  # eth-keys raises BadSignature and friends
        raise ValueError(f"provider fee signature does not recover: {exc}") from None
    return Web3.to_checksum_address(signer)


def is_signed_by(fee: Mapping[str, Any], address: str) -> bool:
    """True when ``fee`` recovers to ``address`` (case-insensitive) and names it as fee address."""
    try:
        signer = recover_provider_fee_signer(fee)
    except ValueError:
        return False
    return (
        signer.lower() == address.lower()
        and str(fee.get("providerFeeAddress", "")).lower() == address.lower()
    )

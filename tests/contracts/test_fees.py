"""The provider-fee wire format: pure functions, property-tested (no chain needed)."""

from __future__ import annotations

import json

import pytest
from eth_account import Account
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts_abi.fees import (
    FEE_FIELDS,
    decode_provider_data,
    is_signed_by,
    provider_data,
    provider_fee_hash,
    recover_provider_fee_signer,
    sign_provider_fee,
)

KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
ADDRESS = Account.from_key(KEY).address
TOKEN = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
DT = "0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9"

keys = st.binary(min_size=32, max_size=32).filter(
    lambda b: (
        0
        < int.from_bytes(b, "big")
        < 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    )
)
addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
uint256 = st.integers(min_value=0, max_value=2**256 - 1)


def test_provider_data_is_compact_json_in_protocol_order() -> None:
    data = provider_data("env1", DT, "svc", 1700000000.25)
    text = bytes.fromhex(data[2:]).decode()
    assert text == ('{"environment":"env1","timestamp":1700000000.25,"dt":"' + DT + '","id":"svc"}')
    assert decode_provider_data(data) == json.loads(text)
    assert decode_provider_data(bytes.fromhex(data[2:]))["id"] == "svc"


@pytest.mark.parametrize("bad", ["0xzz", "0x" + b"[1]".hex(), "0x" + b"\xff".hex(), ""])
def test_decode_provider_data_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        decode_provider_data(bad)


def test_fee_hash_is_keccak_of_the_packed_fields() -> None:
    data = provider_data("e", DT, "s", 1.0)
    packed = (
        bytes.fromhex(data[2:])
        + bytes.fromhex(ADDRESS[2:])
        + bytes.fromhex(TOKEN[2:])
        + (7).to_bytes(32, "big")
        + (99).to_bytes(32, "big")
    )
    assert provider_fee_hash(data, ADDRESS, TOKEN, 7, 99) == keccak(packed)


def test_signed_fee_has_the_wire_shape() -> None:
    data = provider_data("e", DT, "s", 1.5)
    fee = sign_provider_fee(KEY, provider_data_hex=data, fee_token=TOKEN, amount=5, valid_until=9)
    assert tuple(fee) == FEE_FIELDS
    assert fee["providerFeeAddress"] == ADDRESS
    assert fee["providerFeeAmount"] == "5" and fee["validUntil"] == 9
    assert fee["v"] in (27, 28)
    assert len(fee["r"]) == len(fee["s"]) == 66 and fee["r"].startswith("0x")
    # the EIP-191 32-byte prefix over the hash, as ecrecover in the contract expects
    prefixed = keccak(
        b"\x19Ethereum Signed Message:\n32" + provider_fee_hash(data, ADDRESS, TOKEN, 5, 9)
    )
    vrs = (fee["v"], int(fee["r"], 16), int(fee["s"], 16))
    assert Account._recover_hash(prefixed, vrs=vrs) == ADDRESS


@settings(max_examples=40, deadline=None)
@given(
    key=keys,
    env=st.text(max_size=20),
    service=st.text(max_size=20),
    timestamp=st.floats(min_value=0, max_value=4e9, allow_nan=False),
    token=addresses,
    amount=uint256,
    valid_until=uint256,
)
def test_sign_then_recover_round_trips(
    key: bytes,
    env: str,
    service: str,
    timestamp: float,
    token: str,
    amount: int,
    valid_until: int,
) -> None:
    data = provider_data(env, DT, service, timestamp)
    fee = sign_provider_fee(
        key, provider_data_hex=data, fee_token=token, amount=amount, valid_until=valid_until
    )
    signer = Account.from_key(key).address
    assert recover_provider_fee_signer(fee) == signer
    assert is_signed_by(fee, signer.lower())
    assert decode_provider_data(fee["providerData"])["id"] == service
    # v as 0/1 (some clients) recovers the same signer
    assert recover_provider_fee_signer({**fee, "v": fee["v"] - 27}) == signer


@pytest.mark.parametrize(
    ("field", "value"),
    [("providerFeeAmount", "6"), ("validUntil", 10), ("providerFeeToken", DT)],
)
def test_tampering_changes_the_signer(field: str, value: object) -> None:
    data = provider_data("e", DT, "s", 1.5)
    fee = sign_provider_fee(KEY, provider_data_hex=data, fee_token=TOKEN, amount=5, valid_until=9)
    assert is_signed_by(fee, ADDRESS)
    assert not is_signed_by({**fee, field: value}, ADDRESS)


def test_malformed_fee_raises_value_error() -> None:
    with pytest.raises(ValueError):
        recover_provider_fee_signer({"providerData": "0x"})
    with pytest.raises(ValueError):
        sign_provider_fee(KEY, provider_data_hex="0x", fee_token=TOKEN, amount=-1, valid_until=1)

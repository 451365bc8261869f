"""Fast checks of the pure pieces: fee amounts, metadata decoding, credentials."""

from __future__ import annotations

import hashlib
import json
import lzma

import ecies
import pytest
from eth_account import Account
from hypothesis import given
from hypothesis import strategies as st

from contracts_abi import fees as fee_format
from operator_engine.models import ComputeEnvironment
from provider.asset_checks import check_credentials
from provider.errors import ResourceError
from provider.fees import fee_amount, provider_fee
from provider.indexer import decode_metadata

KEY = "0x" + "11" * 32


def test_fee_amount_beyond_one_day_does_not_wrap() -> None:
    day = fee_amount(1, 86400, 18)
    assert fee_amount(1, 3 * 86400, 18) == 3 * day == 3 * 1440 * 10**18


@given(st.integers(min_value=0, max_value=10**8), st.integers(min_value=0, max_value=30))
def test_fee_amount_is_exact_and_floored(seconds: int, decimals: int) -> None:
    amount = fee_amount("0.25", seconds, decimals)
    assert amount == seconds * 25 * 10**decimals // 6000


def test_fee_is_charged_once_and_signed() -> None:
    env = ComputeEnvironment(id="e", price_min=2.0, fee_token="0x" + "22" * 20)
    charged, free = (
        provider_fee(
            KEY,
            env=env,
            datatoken="0x" + "33" * 20,
            service_id="s",
            valid_until=1000,
            charge=charge,
            w3=None,
            now=400,
        )
        for charge in (True, False)
    )
    assert charged["providerFeeAmount"] == str(20 * 10**18)  # 600 s at 2 per minute
    assert free["providerFeeAmount"] == "0"
    assert fee_format.recover_provider_fee_signer(charged) == Account.from_key(KEY).address


@pytest.mark.parametrize("flags", [0, 1, 2, 3])
def test_decode_metadata_flags(flags: int) -> None:
    plain = json.dumps({"id": "did:op:x"}).encode()
    data = lzma.compress(plain) if flags & 1 else plain
    if flags & 2:
        data = ecies.encrypt(Account.from_key(KEY)._key_obj.public_key.to_hex(), data)
    digest = hashlib.sha256(plain).digest()
    assert decode_metadata(bytes([flags]), data, digest, KEY) == {"id": "did:op:x"}
    with pytest.raises(ValueError, match="metaDataHash"):
        decode_metadata(bytes([flags]), data, b"\0" * 32, KEY)


def test_credentials_allow_and_deny() -> None:
    me, other = "0x" + "aa" * 20, "0x" + "bb" * 20
    allow = {"credentials": {"allow": [{"type": "address", "values": [me.upper()[2:] and me]}]}}
    check_credentials(allow, me, "dataset")
    with pytest.raises(ResourceError):
        check_credentials(allow, other, "dataset")
    deny = {"credentials": {"deny": [{"type": "address", "values": [other]}]}}
    check_credentials(deny, me, "dataset")
    with pytest.raises(ResourceError):
        check_credentials(deny, other, "dataset")


def test_aquarius_resolver_over_http() -> None:
    from provider.assets import AquariusResolver
    from tests.provider.chainflow import file_server

    did = "did:op:" + "ab" * 32
    ddo = {"id": did, "nftAddress": "0x" + "cc" * 20, "chainId": 8996, "nft": {"owner": "0xo"}}
    with file_server() as server:
        base = server.add(f"/api/aquarius/assets/ddo/{did}", json.dumps(ddo).encode())
        resolver = AquariusResolver(base.split("/api/")[0])
        found = resolver.resolve(did)
        assert found is not None and found.nft_owner == "0xo" and found.chain_id == 8996
        assert resolver.resolve("did:op:" + "00" * 32) is None

"""provider.signatures: sign → recover round trips, digests, malformed input."""

from __future__ import annotations

import doctest

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

import provider.signatures as signatures
from provider.errors import SignatureError
from provider.signatures import message_digest, nonce_text, recover_signer, sign_text

KEYS = st.binary(min_size=32, max_size=32).filter(
    lambda b: 0 < int.from_bytes(b, "big") < 2**256 - 2**128
)


def test_doctests() -> None:
    assert doctest.testmod(signatures).failed == 0


def _with_v(signature: str, v: int) -> str:
    return signature[:-2] + f"{v:02x}"


@settings(max_examples=40, deadline=None)
@given(key=KEYS, text=st.text(max_size=200), v_form=st.sampled_from(["27/28", "0/1"]))
def test_sign_recover_round_trip(key: bytes, text: str, v_form: str) -> None:
    account = Account.from_key(key)
    signature = sign_text("0x" + key.hex(), text)
    v = int(signature[-2:], 16)
    assert v in (27, 28)
    if v_form == "0/1":
        signature = _with_v(signature, v - 27)
    assert recover_signer(text, signature) == account.address


@settings(max_examples=20, deadline=None)
@given(key=KEYS, text=st.text(max_size=50))
def test_digest_is_eip191_over_keccak_of_text(key: bytes, text: str) -> None:
    # The wallet signs keccak(text) as a 32-byte message: eth_account's own signer agrees.
    signed = Account.sign_message(encode_defunct(primitive=keccak(text.encode())), key)
    assert bytes(signed.message_hash) == message_digest(text)
    assert (
        recover_signer(text, "0x" + bytes(signed.signature).hex()) == Account.from_key(key).address
    )


@settings(max_examples=30, deadline=None)
@given(key=KEYS, text=st.text(max_size=80), v_form=st.sampled_from(["27/28", "0/1"]))
def test_signed_by_agrees_with_eth_account(key: bytes, text: str, v_form: str) -> None:
    """signed_by (the routes' check: libsecp256k1 recovery, 20 bytes compared) says what
    eth-account's recovery says, in either case of the address, for V4 and C2D v2 texts."""
    address = Account.from_key(key).address
    signature = sign_text("0x" + key.hex(), text)
    command = signatures.sign_command("0x" + key.hex(), text)
    if v_form == "0/1":
        signature = _with_v(signature, int(signature[-2:], 16) - 27)
    digest = encode_defunct(primitive=keccak(text.encode()))
    assert Account.recover_message(digest, signature=bytes.fromhex(signature[2:])) == address
    for form in (address, address.lower(), "0X" + address[2:].upper()):
        assert signatures.signed_by(form, signature, text)
        assert signatures.signed_by(form, command, text, command=True)
    other = Account.from_key(bytes(31) + b"\x07").address
    assert not signatures.signed_by(other, signature, text)
    assert not signatures.signed_by(address, signature, text + "x")


@pytest.mark.parametrize("r_or_s", ["r", "s"])
def test_r_or_s_at_or_above_the_curve_order_is_refused(r_or_s: str) -> None:
    signature = bytearray.fromhex(sign_text("0x" + "66" * 32, "t")[2:])
    order = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    signature[0 if r_or_s == "r" else 32 : 32 if r_or_s == "r" else 64] = order.to_bytes(32, "big")
    with pytest.raises(SignatureError, match="cannot recover"):
        recover_signer("t", "0x" + signature.hex())


def test_not_personal_sign_of_the_text() -> None:
    key = "0x" + "33" * 32
    personal = Account.sign_message(encode_defunct(text="hello"), key)
    recovered = recover_signer("hello", "0x" + bytes(personal.signature).hex())
    assert recovered != Account.from_key(key).address


@pytest.mark.parametrize(
    "bad",
    ["", "0x", "0x1234", "0x" + "zz" * 65, "0x" + "00" * 64, "0x" + "11" * 66, 42, None],
)
def test_malformed_signatures_raise_signature_error(bad: object) -> None:
    with pytest.raises(SignatureError):
        recover_signer("text", bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("v", [2, 26, 29, 255])
def test_other_v_values_are_refused(v: int) -> None:
    signature = sign_text("0x" + "44" * 32, "t")
    with pytest.raises(SignatureError, match="v must be"):
        recover_signer("t", _with_v(signature, v))


def test_no_0x_prefix_accepted() -> None:
    key = "0x" + "55" * 32
    signature = sign_text(key, "t")
    assert recover_signer("t", signature[2:]) == Account.from_key(key).address


@pytest.mark.parametrize(
    ("value", "text"),
    [("17", "17"), (17, "17"), ("1e3", "1e3"), (10**30, "1" + "0" * 30)],
)
def test_nonce_text(value: object, text: str) -> None:
    assert nonce_text(value) == text


@pytest.mark.parametrize("value", [True, None, [1], {"a": 1}])
def test_nonce_text_refuses_non_numbers(value: object) -> None:
    with pytest.raises(TypeError):
        nonce_text(value)

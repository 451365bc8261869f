"""Wallet signatures (docs/protocol.md §3): how a signed text is hashed, signed and recovered. Pure
functions; the texts themselves (each request's layout) are :mod:`provider.request_auth`'s.

The wallet signs the 32-byte ``keccak256(utf8(text))`` with the EIP-191 personal prefix, i.e.
the digest is ``keccak256(b"\\x19Ethereum Signed Message:\\n32" + keccak256(utf8(text)))``.

>>> text = "0xAbCjob15"
>>> key = "0x" + "11" * 32
>>> sig = sign_text(key, text)
>>> len(bytes.fromhex(sig[2:])), sig[-2:] in ("1b", "1c")
(65, True)
>>> recover_signer(text, sig) == "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A"
True
>>> nonce_text(12), nonce_text("1.5")
('12', '1.5')

C2D v2 (Ocean Node's API under ``/node``, ocean.js 8) signs ``consumerAddress + nonce +
command`` instead, hashed the same way except that ocean.js 8 drops the
keccak's leading zero bytes before the EIP-191 prefix (``ethers.toBeArray``), so about one
request in 256 signs 31 bytes or fewer (:func:`command_digest`).

>>> text = "0xAbC7startCompute"
>>> signer = recover_signer("x", sign_text(key, "x"))
>>> recover_command_signer(text, sign_command(key, text)) == signer
True
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from coincurve import PublicKey
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import to_checksum_address
from eth_utils.crypto import keccak

from provider.errors import SignatureError

_PREFIX = b"\x19Ethereum Signed Message:\n32"

_HEX_SIG = re.compile(r"^(0x)?[0-9a-fA-F]{130}$")


def message_digest(text: str) -> bytes:
    """The 32-byte digest a wallet signs for ``text`` (EIP-191 over ``keccak(utf8(text))``).

    >>> from eth_account.messages import _hash_eip191_message
    >>> message_digest("hello") == _hash_eip191_message(encode_defunct(primitive=keccak(b"hello")))
    True
    >>> message_digest("hello").hex()[:16]
    '456e9aea5e197a1f'
    """
    return keccak(_PREFIX + keccak(text.encode("utf-8")))


def sign_text(private_key: str, text: str) -> str:
    """Sign ``text`` as ocean.py/ocean.js do; returns 0x + r‖s‖v (65 bytes, v 27/28)."""
    signable = encode_defunct(primitive=keccak(text.encode("utf-8")))
    signed = Account.sign_message(signable, private_key=private_key)
    return "0x" + bytes(signed.signature).hex()


def command_digest(text: str) -> bytes:
    """The digest a wallet signs for ``text`` in C2D v2: EIP-191 over ``keccak(utf8(text))``
    with its leading zero bytes dropped (as ``ethers.toBeArray`` does).

    >>> command_digest("hello") == message_digest("hello")
    True
    """
    hashed = keccak(text.encode("utf-8")).lstrip(b"\0")
    return keccak(b"\x19Ethereum Signed Message:\n" + str(len(hashed)).encode() + hashed)


def sign_command(private_key: str, text: str) -> str:
    """Sign ``text`` as ocean.js 8 does (tests and tools); 0x + r‖s‖v."""
    hashed = keccak(text.encode("utf-8")).lstrip(b"\0")
    signed = Account.sign_message(encode_defunct(primitive=hashed), private_key=private_key)
    return "0x" + bytes(signed.signature).hex()


def recover_command_signer(text: str, signature: str) -> str:
    """The checksum address that signed the C2D v2 ``text`` (see :func:`recover_signer`)."""
    return to_checksum_address(_recover(command_digest(text), signature))


def recover_signer(text: str, signature: str) -> str:
    """The checksum address that signed ``text``; v may be 0, 1, 27 or 28.

    Raises :class:`SignatureError` when ``signature`` is not 65 bytes of hex, has another v,
    or does not recover to any key.

    >>> recover_signer("x", "0x" + "00" * 65)
    Traceback (most recent call last):
    ...
    provider.errors.SignatureError: Invalid signature: cannot recover a signer.
    """
    return to_checksum_address(_recover(message_digest(text), signature))


def signed_by(address: str, signature: str, text: str, *, command: bool = False) -> bool:
    """True when ``signature`` over ``text`` (a C2D v2 command when ``command``) recovers to
    ``address`` (0x + 40 hex digits, any case): the signer's 20 bytes are compared, so no
    checksum is computed. Raises :class:`SignatureError` as :func:`recover_signer` does.

    >>> sig = sign_text("0x" + "11" * 32, "x")
    >>> signed_by("0x19e7e376e7c213b7e7e7e46cc70a5dd086daff2a", sig, "x")
    True
    >>> signed_by("0x" + "00" * 20, sig, "x"), signed_by("0xzz", sig, "x")
    (False, False)
    """
    digest = command_digest(text) if command else message_digest(text)
    signer = _recover(digest, signature)
    try:
        return address[:2] in ("0x", "0X") and signer == bytes.fromhex(address[2:])
    except ValueError:  # not hex: no signer has that address
        return False


def _recover(digest: bytes, signature: str) -> bytes:
    """The 20-byte address whose key made ``signature`` over ``digest`` (libsecp256k1 through
    coincurve: r and s must be below the curve order, as eth-keys requires)."""
    if not isinstance(signature, str) or not _HEX_SIG.match(signature):
        raise SignatureError("Invalid signature: expected 0x followed by 65 bytes of hex.")
    raw = bytearray.fromhex(signature[2:] if signature[:2] in ("0x", "0X") else signature)
    v = raw[64]
    if v in (27, 28):
        raw[64] = v - 27
    elif v not in (0, 1):
        raise SignatureError("Invalid signature: v must be 0, 1, 27 or 28.")
    try:
        public_key = PublicKey.from_signature_and_message(bytes(raw), digest, hasher=None)
    except ValueError:
        raise SignatureError("Invalid signature: cannot recover a signer.") from None
    return keccak(public_key.format(compressed=False)[1:])[12:]


def nonce_text(value: Any) -> str:
    """The nonce exactly as the client sent it (the text it signed).

    Query values and JSON strings are used as is; JSON numbers parsed by
    :mod:`provider.params` carry their original digits in ``.text``.

    >>> nonce_text(Decimal("10.50"))
    '10.50'
    >>> nonce_text(True)
    Traceback (most recent call last):
    ...
    TypeError: a nonce must be a string or a number
    """
    text = getattr(value, "text", None)
    if isinstance(text, str):
        return text
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise TypeError("a nonce must be a string or a number")
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    raise TypeError("a nonce must be a string or a number")

"""ECIES for the provider's key (docs/protocol.md §7): eciespy's secp256k1 format, i.e.
65-byte uncompressed ephemeral public key ‖ 16-byte AES-GCM nonce ‖ 16-byte tag ‖ ciphertext.

>>> key = "0x" + "22" * 32
>>> blob = encrypt_for_key(public_key_hex(key), b"hello")
>>> len(blob) == 65 + 16 + 16 + 5, decrypt_with_key(key, blob)
(True, b'hello')
"""

from __future__ import annotations

import ecies
from eth_keys.datatypes import PrivateKey


class DecryptionError(ValueError):
    """The ciphertext is malformed or not for this key (no detail: it is not the client's)."""


def public_key_hex(private_key: str) -> str:
    """The uncompressed secp256k1 public key (64 bytes hex, no prefix) of ``private_key``."""
    raw = bytes.fromhex(private_key.removeprefix("0x"))
    return str(PrivateKey(raw).public_key.to_hex())


def encrypt_for_key(public_key: str, data: bytes) -> bytes:
    """ECIES-encrypt ``data`` for ``public_key``."""
    return bytes(ecies.encrypt(public_key, data))


def decrypt_with_key(private_key: str, blob: bytes) -> bytes:
    """ECIES-decrypt ``blob`` with ``private_key``; raises :class:`DecryptionError`."""
    try:
        return bytes(ecies.decrypt(private_key.removeprefix("0x"), blob))
    except Exception:  # eciespy raises ValueError, coincurve errors, cryptography's InvalidTag…
        raise DecryptionError("cannot decrypt: not encrypted for this provider") from None


def decrypt_hex(private_key: str, hex_text: str) -> bytes:
    """Decrypt a ``0x…`` ciphertext (the form ``POST encrypt`` returns)."""
    try:
        blob = bytes.fromhex(hex_text.removeprefix("0x"))
    except ValueError:
        raise DecryptionError("ciphertext is not hex") from None
    return decrypt_with_key(private_key, blob)

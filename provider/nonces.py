"""Replay-proof nonces (docs/protocol.md §3); the signed requests that consume them are checked by
:mod:`provider.request_auth`.

A signed request carries ``nonce``; it must parse as a finite decimal and be strictly greater
(compared as arbitrary-precision decimals) than the nonce stored for the lowercased address,
which is replaced *before* the request acts. Storage is a compare-and-swap
(:class:`datastore.nonces.NonceRepository`) with a bounded retry, so two requests with the same
nonce can never both pass, on SQLite or PostgreSQL, in one process or several.

A request's signature is checked before its nonce is consumed, so a forged signature never
moves anyone's nonce.
"""

from __future__ import annotations

import re
from decimal import Decimal, localcontext

from sqlalchemy import Engine

from datastore.nonces import NONCE_CHARS, NonceRepository
from provider.errors import RequestValidationError, SignatureError

#: What an unknown address's nonce reads as (clients then send stored + 1).
INITIAL_NONCE = "1"
MAX_NONCE_CHARS = NONCE_CHARS
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", re.ASCII)
_RETRIES = 50


def parse_nonce(text: str) -> Decimal:
    """``text`` as a finite Decimal, or a 400 validation error under ``nonce``.

    >>> parse_nonce("1e3"), parse_nonce("1700000000123"), parse_nonce("-2.5")
    (Decimal('1E+3'), Decimal('1700000000123'), Decimal('-2.5'))
    >>> parse_nonce("NaN")
    Traceback (most recent call last):
    ...
    provider.errors.RequestValidationError: Validation error
    """
    if len(text) > MAX_NONCE_CHARS or not _NUMBER.fullmatch(text):
        raise RequestValidationError(
            {
                "nonce": [
                    f"The nonce field must be a finite decimal number of at most "
                    f"{MAX_NONCE_CHARS} characters."
                ]
            }
        )
    value = Decimal(text)
    if abs(value.adjusted()) > MAX_NONCE_CHARS:
        raise RequestValidationError(
            {"nonce": [f"The nonce field's exponent must be within ±{MAX_NONCE_CHARS}."]}
        )
    return value


def next_nonce(stored: str) -> str:
    """``stored + 1`` as text, exactly (what ocean.js signs for delete).

    >>> next_nonce("5"), next_nonce("1.5"), next_nonce("9" * 40)[:3], len(next_nonce("9" * 40))
    ('6', '2.5', '100', 41)
    """
    value = Decimal(stored)
    with localcontext() as ctx:
        ctx.prec = MAX_NONCE_CHARS * 3
        result = value + 1
    if result == result.to_integral_value():
        return str(int(result))
    return format(result, "f")


class NonceStore:
    """The last nonce each address used, in the shared SQL store."""

    def __init__(self, db: Engine) -> None:
        self.rows = NonceRepository(db)

    def get(self, address: str) -> str:
        """The stored nonce text for ``address`` (``"1"`` when the address is unknown)."""
        return self.rows.stored(address.lower()) or INITIAL_NONCE

    def consume(self, address: str, nonce_text: str) -> None:
        """Atomically require ``nonce_text`` > stored and store it; else a 400 under signature."""
        new = parse_nonce(nonce_text)
        key = address.lower()
        for _ in range(_RETRIES):
            seen = self.rows.stored(key)
            stored = INITIAL_NONCE if seen is None else seen
            if not new > Decimal(stored):
                raise SignatureError(
                    f"Invalid signature expected nonce ({nonce_text}) > current nonce ({stored})."
                )
            if self.rows.swap(key, seen, nonce_text):
                return
        raise SignatureError("Invalid signature: the nonce is contended, retry.")

"""Request parameters (docs/protocol.md §1): query string or JSON body, raw nonce text kept.

GET, PUT and DELETE read the query string and, when a body is present, a JSON object body
(ocean.js sends PUT/DELETE ``compute`` as JSON); body values win over query values. POST reads a
JSON object body. JSON numbers are parsed into :class:`JsonInt` / :class:`JsonFloat`, which
behave as numbers but keep the digits exactly as sent in ``.text`` (the signed nonce text).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from flask import request

from provider import json_limits
from provider.errors import ProviderError, RequestValidationError

_MISSING = object()
UINT256_MAX = 2**256 - 1
#: A non-negative JSON-style decimal: digits, optional fraction, optional short exponent.
_DECIMAL = re.compile(r"[0-9]{1,100}(\.[0-9]{1,100})?([eE][+-]?[0-9]{1,4})?")


class JsonInt(int):
    """A JSON integer that remembers its text (``.text``)."""

    text: str

    def __new__(cls, text: str) -> JsonInt:
        obj = super().__new__(cls, text)
        obj.text = text
        return obj


class JsonFloat(float):
    """A JSON non-integer number that remembers its text (``1e400`` stays ``"1e400"``)."""

    text: str

    def __new__(cls, text: str) -> JsonFloat:
        obj = super().__new__(cls, text)
        obj.text = text
        return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes) -> Any:
    """Parse ``raw`` strictly (no NaN/Infinity), numbers as :class:`JsonInt`/:class:`JsonFloat`.

    >>> body = parse_json(b'{"nonce": 1e3, "n": 12345678901234567890123}')
    >>> body["nonce"].text, body["n"].text, body["n"] + 0
    ('1e3', '12345678901234567890123', 12345678901234567890123)
    """
    return json_limits.loads(
        raw, parse_int=JsonInt, parse_float=JsonFloat, parse_constant=_reject_constant
    )


def _body_object(required: bool) -> dict[str, Any]:
    raw = request.get_data(cache=True)
    if not raw.strip():
        if required:
            raise RequestValidationError({"body": ["The request body must be a JSON object."]})
        return {}
    try:
        body = parse_json(raw)
    except json_limits.JsonTooDeep:
        raise
    except (ValueError, RecursionError):
        raise RequestValidationError({"body": ["The request body is not valid JSON."]}) from None
    if not isinstance(body, dict):
        raise RequestValidationError({"body": ["The request body must be a JSON object."]})
    return body


def request_params() -> dict[str, Any]:
    """The request's parameters as a dict (see the module docstring for the sources)."""
    if request.method == "POST":
        return _body_object(required=True)
    args = request.args
    params: dict[str, Any] = {key: args.get(key) for key in args}
    if json_limits.has_body(request.environ):  # a bodiless GET reads no stream
        params.update(_body_object(required=False))
    return params


def lookup(params: dict[str, Any], dotted: str) -> Any:
    """The value at ``dotted`` (``"dataset.documentId"``), or None when absent."""
    value: Any = params
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part, _MISSING)
        if value is _MISSING:
            return None
    return value


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def require(params: dict[str, Any], *fields: str) -> list[Any]:
    """The values of ``fields``; raises one validation error naming every missing field.

    >>> require({"a": "1", "b": {"c": 2}}, "a", "b.c")
    ['1', 2]
    >>> require({"a": ""}, "a", "b.c")
    Traceback (most recent call last):
    ...
    provider.errors.RequestValidationError: Validation error
    """
    values = [lookup(params, name) for name in fields]
    errors = {
        name: [f"The {name} field is required."]
        for name, value in zip(fields, values, strict=True)
        if is_missing(value)
    }
    if errors:
        raise RequestValidationError(errors)
    return values


def text_param(params: dict[str, Any], name: str) -> str | None:
    """An optional scalar parameter as text (numbers as sent), None when absent or empty."""
    value = lookup(params, name)
    if is_missing(value):
        return None
    if isinstance(value, dict | list) or isinstance(value, bool):
        raise RequestValidationError({name: [f"The {name} field must be a string."]})
    text = getattr(value, "text", None)
    return text if isinstance(text, str) else str(value)


def is_digits(text: str, max_digits: int = 78) -> bool:
    """True for 1 to ``max_digits`` ASCII digits (78 holds any uint256; it also keeps ``int()``
    far below Python's 4,300-digit conversion limit, which would raise).

    >>> is_digits("0042"), is_digits("4" * 79), is_digits("٣"), is_digits("")
    (True, False, False, False)
    """
    return 0 < len(text) <= max_digits and text.isascii() and text.isdigit()


def parse_uint(text: str, maximum: int = UINT256_MAX) -> int | None:
    """``text`` (a JSON number's digits or a decimal string) as an exact integer in
    ``[0, maximum]``, or None. Integral values in decimal or exponent form count
    (``"1.7e9"``, ``"1700000000.0"``); fractions, signs, hex, ``inf``/``NaN`` do not. Never
    goes through ``float``.

    >>> parse_uint("1" + "0" * 70) == 10**70, parse_uint("1.7e9"), parse_uint("1e400")
    (True, 1700000000, None)
    >>> parse_uint("1.5"), parse_uint("inf"), parse_uint(str(2**256)), parse_uint("-1")
    (None, None, None, None)
    """
    text = text.strip()
    if not _DECIMAL.fullmatch(text):
        return None
    value = Decimal(text)
    if value.adjusted() > len(str(maximum)):  # bounds the int() below (1e9999 stays cheap)
        return None
    if value != value.to_integral_value():
        return None
    number = int(value)
    return number if number <= maximum else None


def uint_param(params: dict[str, Any], name: str, maximum: int = UINT256_MAX) -> int | None:
    """An optional unsigned integer parameter, exact (see :func:`parse_uint`); None when
    absent; 400 naming the field when it is not an integer in ``[0, maximum]``."""
    text = text_param(params, name)
    if text is None:
        return None
    value = parse_uint(text, maximum)
    if value is None:
        bound = "2**256 - 1" if maximum == UINT256_MAX else str(maximum)
        raise RequestValidationError(
            {name: [f"The {name} field must be an integer from 0 to {bound}."]}
        )
    return value


def address_param(params: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    """A 0x-prefixed 20-byte hex address parameter (case kept), validated."""
    value = text_param(params, name)
    if value is None:
        if required:
            raise RequestValidationError({name: [f"The {name} field is required."]})
        return None
    if not is_address(value):
        raise RequestValidationError({name: [f"The {name} field must be a valid address."]})
    return value


_ADDRESS = re.compile(r"0[xX][0-9a-fA-F]{40}")


def is_address(value: str) -> bool:
    """True for ``0x`` followed by 40 hex digits (any case).

    >>> is_address("0x" + "aB" * 20), is_address("0x123")
    (True, False)
    """
    return _ADDRESS.fullmatch(value) is not None


def require_chain_id(raw: object, chain_id: int, name: str = "chainId") -> int:
    """``raw`` as this provider's chain id; 400 when missing, not an integer, or another chain."""
    text = None if raw is None else (getattr(raw, "text", None) or str(raw)).strip()
    if not text:
        raise RequestValidationError({name: [f"The {name} field is required."]})
    if not is_digits(text):
        raise RequestValidationError({name: [f"The {name} field must be an integer."]})
    if int(text) != chain_id:
        raise ProviderError(f"Unsupported chain ID {text}", 400)
    return chain_id

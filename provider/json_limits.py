"""Bounded JSON: every JSON text the provider parses goes through :func:`loads` (a ruff rule
bans ``json.loads`` elsewhere in ``provider/``).

Python's ``json`` parser recurses once per ``[`` or ``{``, in C. Importing web3 pulls in
py_ecc, which raises the recursion limit to 100,000, so a 200 KB body of nested brackets
overflows the thread's C stack (SIGSEGV, the whole process dies) long before a
``RecursionError`` could be raised. :func:`check_depth` bounds the nesting with linear scans of
the raw text *before* anything recursive runs.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Flask, request
from flask.json.provider import DefaultJSONProvider

from provider.errors import ProviderError

#: Deepest nesting of arrays and objects accepted anywhere (Ocean's deepest document, a DDO
#: with its services' consumer parameters, nests under 10 levels).
MAX_DEPTH = 64

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS_ONLY = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


class JsonTooDeep(ProviderError, ValueError):
    """A JSON text nests deeper than :data:`MAX_DEPTH`: 400 ``{"error": ...}`` in a request,
    and a ``ValueError`` (not JSON we accept) wherever JSON from the chain is decoded."""

    def __init__(self, limit: int = MAX_DEPTH) -> None:
        super().__init__(
            f"JSON refused: nested deeper than {limit} levels, or unbalanced brackets", 400
        )


def nesting_exceeds(raw: bytes | str, limit: int = MAX_DEPTH) -> bool:
    """True when ``raw`` nests arrays/objects deeper than ``limit``, or its brackets (outside
    strings) do not balance (then it is not JSON either). Every step runs in C.

    >>> nesting_exceeds(b'{"a": [[1], {"b": "[[[["}]}', 3), nesting_exceeds(b"[[[[]]]]", 3)
    (False, True)
    >>> nesting_exceeds("[" * 100_000), nesting_exceeds(b'["\\\\"]', 1)
    (True, False)
    """
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    # Strings out, then nothing but brackets; each pass removes the innermost pair of every
    # nest, so balanced text of depth <= limit is empty after ``limit`` passes.
    brackets = _STRING.sub(b"", data).translate(_BRACKETS_ONLY, _NOT_BRACKETS)
    if b"[" * (limit + 1) in brackets:
        return True
    for _ in range(limit):
        reduced = brackets.replace(b"[]", b"")
        if len(reduced) == len(brackets):
            break
        brackets = reduced
    return bool(brackets)


def check_depth(raw: bytes | str, limit: int = MAX_DEPTH) -> None:
    """Raise :class:`JsonTooDeep` when :func:`nesting_exceeds`."""
    if nesting_exceeds(raw, limit):
        raise JsonTooDeep(limit)


def loads(raw: bytes | str, **options: Any) -> Any:
    """``json.loads(raw, **options)`` after :func:`check_depth`."""
    check_depth(raw)
    return json.loads(raw, **options)  # noqa: TID251 (the one bounded parse)


class BoundedJSONProvider(DefaultJSONProvider):
    """Flask's JSON provider with :func:`check_depth` before every parse (``get_json``)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        check_depth(s)
        return super().loads(s, **kwargs)


def install_json_limits(app: Flask) -> None:
    """Bound every JSON parse of ``app``, and refuse a too-deep JSON body on *every* route
    before its view runs (even views that never read their body)."""
    app.json = BoundedJSONProvider(app)

    @app.before_request
    def _bound_json_body() -> None:
        if has_body(request.environ) and request.is_json:
            check_depth(request.get_data(cache=True))


def has_body(environ: dict[str, Any]) -> bool:
    """True when the request may carry a body: a non-zero ``Content-Length`` or a
    ``Transfer-Encoding`` (chunked). Bodiless requests, most of them, skip the scan.

    >>> has_body({"CONTENT_LENGTH": "0"}), has_body({}), has_body({"CONTENT_LENGTH": "12"})
    (False, False, True)
    >>> has_body({"HTTP_TRANSFER_ENCODING": "chunked"})
    True
    """
    return environ.get("CONTENT_LENGTH") not in (None, "", "0") or (
        "HTTP_TRANSFER_ENCODING" in environ
    )

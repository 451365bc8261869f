"""Structured request logs: one JSON line per request on the ``tidewater.access`` logger.

Each line holds ``request_id`` (the client's ``X-Request-Id`` when it is a short token, else a
generated one; echoed in the response), ``method``, ``path`` (never the query string: it can
carry signatures and nonces), ``status`` and ``duration_ms``. Request bodies, headers,
signatures, keys and decrypted URLs are never logged.
"""

from __future__ import annotations

import json
import logging
import random
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, request

from provider import json_limits

access_log = logging.getLogger("tidewater.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def request_id_from(header: str | None) -> str:
    """The client's request id when it is a safe short token, else a fresh one.

    >>> request_id_from("abc-123")
    'abc-123'
    >>> len(request_id_from("bad id\\n{}")) == 32
    True
    """
    if header and _REQUEST_ID.match(header):
        return header
    # A correlation id, not a secret: the PRNG (reseeded in every forked worker) spares a
    # getrandom(2) call per request.
    return f"{random.getrandbits(128):032x}"


def install_request_logging(app: Flask) -> None:
    """Register the hooks that assign request ids and write one access line per request."""

    @app.before_request
    def _start() -> None:
        g.request_started = time.perf_counter()
        g.request_id = request_id_from(request.environ.get("HTTP_X_REQUEST_ID"))

    @app.after_request
    def _log(response: Response) -> Response:
        now = time.perf_counter()
        request_id = getattr(g, "request_id", None) or request_id_from(None)
        started = getattr(g, "request_started", now)
        response.headers["X-Request-Id"] = request_id
        if not access_log.isEnabledFor(logging.INFO):
            return response
        req = request._get_current_object()  # type: ignore[attr-defined]
        fields = _AccessFields(
            request_id=request_id,
            method=req.method,
            path=req.path,
            status=response.status_code,
            duration_ms=round((now - started) * 1000, 3),
        )
        # As access_log.info("%s", fields) would, without walking the stack for the caller
        # (the caller is always this hook).
        record = access_log.makeRecord(
            access_log.name,
            logging.INFO,
            __file__,
            0,
            "%s",
            (fields,),
            None,
            extra={"access": fields},
        )
        access_log.handle(record)
        return response


class _AccessFields(dict[str, Any]):
    """An access line's fields; reads as compact JSON wherever the message is formatted, while
    :class:`JsonFormatter` merges the dict itself (no encode-decode round trip)."""

    def __str__(self) -> str:
        return json.dumps(self, separators=(",", ":"))


class JsonFormatter(logging.Formatter):
    """Every record as one JSON object (access lines are merged in, not nested)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        fields = getattr(record, "access", None)
        if isinstance(fields, dict):
            entry.update(fields)
        else:
            message = record.getMessage()
            if record.name == access_log.name and message.startswith("{"):
                entry.update(json_limits.loads(message))
            else:
                entry["message"] = message
        if record.exc_info:
            entry["exc_type"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        return json.dumps(entry, separators=(",", ":"))


def configure_logging(level: str = "INFO") -> None:
    """Send every tidewater log to stderr as JSON lines (used by ``tidewater serve``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # werkzeug's own access lines repeat the full URL (query string included): silence them.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

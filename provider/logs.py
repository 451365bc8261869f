"""Structured request logs: one JSON line per request on the ``tidewater.access`` logger.

Each line holds ``request_id`` (the client's ``X-Request-Id`` when it is a short token, else a
generated one; echoed in the response), ``method``, ``path`` (never the query string: it can
carry signatures and nonces), ``status`` and ``duration_ms``. Request bodies, headers,
signatures, keys and decrypted URLs are never logged.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import random
import re
import sys
import threading
import time
import weakref
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


class BackgroundHandler(logging.Handler):
    """Hands records to one thread of its own, which formats them with ``target``'s formatter
    and writes what has piled up in one call to ``target``'s stream.

    A request thread only appends to a queue: no lock, no system call. Writing on the request
    thread held the handler's lock across ``write(2)``, which releases the GIL; under load the
    writer then waited for the GIL while every other request thread queued on the lock (py-spy:
    15-20 % of a gunicorn worker's samples were threads waiting in ``Handler.acquire``).
    Records still queued are written by :meth:`flush` and :meth:`close` (``logging.shutdown``
    at exit); a forked child starts with an empty queue and its own thread on its first record.
    """

    def __init__(self, target: logging.StreamHandler) -> None:  # type: ignore[type-arg]
        super().__init__()
        self.target = target
        self._start()
        start = weakref.WeakMethod(self._start)  # a replaced handler may be collected
        os.register_at_fork(after_in_child=lambda: (method := start()) and method())

    def _start(self) -> None:
        self._queue: queue.SimpleQueue[logging.LogRecord | threading.Event | None] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._closed = False

    def handle(self, record: logging.LogRecord) -> bool:  # no handler lock: the queue is safe
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        if self._thread is None and not self._closed:
            with self.lock:  # type: ignore[union-attr]
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._write_forever, name="log-writer", daemon=True
                    )
                    self._thread.start()
        self._queue.put(record)

    def _write_forever(self) -> None:
        while True:
            item = self._queue.get()
            batch: list[logging.LogRecord] = []
            done: list[threading.Event] = []
            stop = False
            while True:  # what piled up while the last batch was written goes in one write
                if item is None:
                    stop = True
                elif isinstance(item, threading.Event):
                    done.append(item)
                else:
                    batch.append(item)
                if stop:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            self._write(batch)
            for event in done:
                event.set()
            if stop:
                return

    def _write(self, batch: list[logging.LogRecord]) -> None:
        if not batch:
            return
        lines = []
        for record in batch:
            try:
                lines.append(self.target.format(record) + self.target.terminator)
            except Exception:
                self.handleError(record)
        try:
            self.target.stream.write("".join(lines))
            self.target.flush()
        except Exception:
            self.handleError(batch[-1])

    def flush(self, timeout: float = 5.0) -> None:
        """Wait (at most ``timeout`` seconds) until every record queued so far is written."""
        thread = self._thread
        if thread is None or not thread.is_alive() or thread is threading.current_thread():
            return
        written = threading.Event()
        self._queue.put(written)
        written.wait(timeout)

    def close(self) -> None:
        thread = self._thread
        self._closed = True
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            self._queue.put(None)
            thread.join(5.0)
        super().close()


def configure_logging(level: str = "INFO") -> None:
    """Send every tidewater log to stderr as JSON lines (used by ``tidewater serve``), written
    by a thread of their own (:class:`BackgroundHandler`)."""
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(JsonFormatter())
    handler = BackgroundHandler(stream)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # werkzeug's own access lines repeat the full URL (query string included): silence them.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

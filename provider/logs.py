"""Structured request logs: one JSON line per request on the ``tidewater.access`` logger.

Each line holds ``request_id`` (the client's ``X-Request-Id`` when it is a short token, else a
generated one; echoed in the response), ``method``, ``path`` (never the query string: it can
carry signatures and nonces), ``status`` and ``duration_ms``. Request bodies, headers,
signatures, keys and decrypted URLs are never logged. The lines are made off the request
thread by :mod:`provider.request_accounting`; this module owns their format and the handler
that writes every log line (:class:`BackgroundHandler`).
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
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

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


class AccessFields(dict[str, Any]):
    """An access line's fields; reads as compact JSON wherever the message is formatted, while
    :class:`JsonFormatter` merges the dict itself (no encode-decode round trip). Written by
    :mod:`provider.request_accounting`."""

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


def _weakly(method: Callable[[], None]) -> Callable[[], None]:
    """``method`` called through a weak reference (a no-op once its object is collected)."""
    ref = weakref.WeakMethod(method)

    def call() -> None:
        bound = ref()
        if bound is not None:
            bound()

    return call


class BackgroundHandler(logging.Handler):
    """Queues records; a thread of its own wakes every :attr:`interval` seconds, formats what
    piled up with ``target``'s formatter and writes it in one call to ``target``'s stream.

    A request thread only appends to a queue: no lock, no system call, no thread woken.
    Writing on the request thread held the handler's lock across ``write(2)``, which releases
    the GIL; under load the writer then waited for the GIL while the other request threads
    queued on the lock (py-spy: 15-20 % of a loaded gunicorn worker's samples sat in
    ``Handler.acquire``). Waking the writer for each record instead cost more CPU than the
    write (a futex wake and a GIL hand-off per request), hence the interval. Lines reach the
    stream up to :attr:`interval` late; :meth:`flush` and :meth:`close` (``logging.shutdown``
    at exit) write what is queued at once. A fork waits for a write in progress; the child
    starts with an empty queue and its own thread on its first record.
    """

    #: Seconds between two writes of what piled up.
    interval = 0.1

    def __init__(self, target: logging.StreamHandler) -> None:  # type: ignore[type-arg]
        super().__init__()
        self.target = target
        self._start()
        # No fork while the writer is inside a write: the child would inherit the stream's
        # buffer lock held by a thread it does not have (gunicorn's master forks workers).
        os.register_at_fork(
            before=_weakly(self._hold_writes),
            after_in_parent=_weakly(self._release_writes),
            after_in_child=_weakly(self._start),
        )

    def _hold_writes(self) -> None:
        self._writing.acquire()

    def _release_writes(self) -> None:
        self._writing.release()

    def _start(self) -> None:
        self._queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._writing = threading.RLock()  # one drain at a time: lines stay in order

    def handle(self, record: logging.LogRecord) -> bool:  # no handler lock: the queue is safe
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        if self._thread is None and not self._stop.is_set():
            with self.lock:  # type: ignore[union-attr]
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._write_forever, name="log-writer", daemon=True
                    )
                    self._thread.start()
        self._queue.put(record)

    def _write_forever(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()

    def flush(self) -> None:
        """Write every record queued so far."""
        with self._writing:
            lines = []
            while True:
                try:
                    record = self._queue.get_nowait()
                except queue.Empty:
                    break
                try:
                    lines.append(self.target.format(record) + self.target.terminator)
                except Exception:
                    self.handleError(record)
            if not lines:
                return
            try:
                self.target.stream.write("".join(lines))
                self.target.flush()
            except Exception:
                self.handleError(record)

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(5.0)
        self.flush()
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

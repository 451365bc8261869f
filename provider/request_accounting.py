"""Per-request accounting, kept off the request thread: the request id, the response headers
every answer carries (``X-Request-Id``, CORS), one access line and the request metrics.

:class:`RequestAccounting` wraps the Flask app as WSGI middleware. On the request thread it
only reads the clock, picks the request id (the client's ``X-Request-Id`` when it is a short
safe token, else a fresh one; :func:`provider.logs.request_id_from`), appends the headers as
plain tuples and queues one small tuple. A thread of its own wakes every :attr:`Accountant.
interval` seconds and turns what piled up into access log records
(:data:`provider.logs.access_log`) and Prometheus samples (:func:`provider.metrics.count`,
counts added once per label set per batch). Building a log record and updating shared-memory
metrics per request on the request thread cost more than the status route's own work; under a
GIL every microsecond there is a microsecond less for serving.

Lines and samples therefore reach their sinks up to ``interval`` late: :func:`flush` writes what
is queued at once (``GET /metrics`` calls it before reading, gunicorn at worker exit, and the
interpreter at exit). The middleware sees every answer, errors and preflights included; the
view's route rule and the :class:`~provider.errors.ProviderError` it raised reach it through
the WSGI environ (:data:`ROUTE_KEY`, :data:`ERROR_KEY`).
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

#: environ key of the request id (error logs quote it).
REQUEST_ID_KEY = "tidewater.request_id"
#: environ key of the matched route rule (``/api/services/compute``), set before the view runs.
ROUTE_KEY = "tidewater.route"
#: environ key of the ProviderError a request ended with (counted by the metrics).
ERROR_KEY = "tidewater.error"

CORS_METHODS = "GET, POST, PUT, DELETE, OPTIONS"
CORS_EXPOSE = "Content-Disposition, Content-Length, Content-Range, Accept-Ranges, X-Request-Id"
#: Preflights that name no headers still get these (ocean.js 8 sends Authorization and Range).
CORS_HEADERS = "Content-Type, Authorization, Range"
_CORS = [("Access-Control-Allow-Origin", "*"), ("Access-Control-Expose-Headers", CORS_EXPOSE)]
_UNSAFE_IN_HEADER = frozenset("\r\n\0")

StartResponse = Callable[..., Any]


class Entry(NamedTuple):
    """What one request leaves for the accountant."""

    created: float  # wall clock when the answer was ready (the log line's ``ts``)
    request_id: str
    method: str
    path_info: str  # as the WSGI server gives it (latin-1 text of the raw bytes)
    route: str | None
    status: int
    seconds: float
    headers: list[tuple[str, str]]
    error: Any


def preflight_headers(environ: dict[str, Any]) -> list[tuple[str, str]]:
    """The extra CORS headers of an ``OPTIONS`` answer: the headers the browser asked to send
    are allowed (when they are plain text), else :data:`CORS_HEADERS`.

    >>> dict(preflight_headers({"HTTP_ACCESS_CONTROL_REQUEST_HEADERS": "content-type"}))[
    ...     "Access-Control-Allow-Headers"]
    'content-type'
    >>> dict(preflight_headers({"HTTP_ACCESS_CONTROL_REQUEST_HEADERS": "a\\r\\nb"}))[
    ...     "Access-Control-Allow-Headers"] == CORS_HEADERS
    True
    """
    asked = environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS")
    if not asked or not _UNSAFE_IN_HEADER.isdisjoint(asked):
        asked = CORS_HEADERS
    return [
        ("Access-Control-Allow-Methods", CORS_METHODS),
        ("Access-Control-Allow-Headers", asked),
        ("Access-Control-Max-Age", "600"),
    ]


class RequestAccounting:
    """WSGI middleware: request id and common headers on every answer, one :class:`Entry` per
    answer queued for :data:`ACCOUNTANT`."""

    def __init__(self, app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]) -> None:
        from provider.logs import request_id_from  # (provider.errors imports this module)

        self.app = app
        self.request_id_from = request_id_from

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        request_id = self.request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        environ[REQUEST_ID_KEY] = request_id
        method = environ.get("REQUEST_METHOD", "GET")
        answered: list[Any] = []

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            headers.append(("X-Request-Id", request_id))
            headers.extend(_CORS)
            if method == "OPTIONS":
                headers.extend(preflight_headers(environ))
            answered[:] = (status, headers)
            return start_response(status, headers, exc_info)

        body = self.app(environ, start)
        if answered:
            ACCOUNTANT.put(
                Entry(
                    time.time(),
                    request_id,
                    method,
                    environ.get("PATH_INFO", ""),
                    environ.get(ROUTE_KEY),
                    int(answered[0][:3]),
                    time.perf_counter() - started,
                    answered[1],
                    environ.get(ERROR_KEY),
                )
            )
        return body


class Accountant:
    """Queued :class:`Entry` objects, written as access lines and metrics by a thread that
    wakes every :attr:`interval` seconds (started on the first entry, again in a forked child).
    """

    #: Seconds between two batches.
    interval = 0.1

    def __init__(self) -> None:
        self._start()
        os.register_at_fork(after_in_child=self._start)

    def _start(self) -> None:
        self._queue: queue.SimpleQueue[Entry] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._starting = threading.Lock()
        self._draining = threading.Lock()  # one batch at a time: lines stay in order

    def put(self, entry: Entry) -> None:
        if self._thread is None:
            with self._starting:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="request-accounting", daemon=True
                    )
                    self._thread.start()
        self._queue.put(entry)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            try:
                self.flush()
            except Exception:  # a sink failed: this batch is lost, the next ones are not
                logging.getLogger(__name__).exception("request accounting failed")

    def flush(self) -> None:
        """Account for every entry queued so far, now."""
        with self._draining:
            batch: list[Entry] = []
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            if not batch:
                return
            try:
                _write_access_lines(batch)
            finally:
                from provider.metrics import count  # it imports prometheus_client: lazily

                count(batch)


def _write_access_lines(batch: list[Entry]) -> None:
    from provider import logs

    log = logs.access_log
    if not log.isEnabledFor(logging.INFO):
        return
    # One record made the usual way per batch; the others are copies of it with the entry's
    # fields (LogRecord.__init__ looks up the process, thread and module names each time: most
    # of a line's cost, and the same for every line of a batch).
    template = log.makeRecord(log.name, logging.INFO, __file__, 0, "%s", (), None).__dict__
    for entry in batch:
        fields = logs.AccessFields(
            request_id=entry.request_id,
            method=entry.method,
            path=_path(entry.path_info),
            status=entry.status,
            duration_ms=round(entry.seconds * 1000, 3),
        )
        record = logging.LogRecord.__new__(logging.LogRecord)
        record.__dict__.update(template)
        record.args = (fields,)
        record.access = fields
        record.created = entry.created
        record.msecs = (entry.created - int(entry.created)) * 1000
        log.handle(record)


def _path(path_info: str) -> str:
    """The path as Flask's ``request.path`` gives it (PEP 3333 latin-1 text → UTF-8).

    >>> _path("caf\xc3\xa9"), _path("")
    ('/café', '/')
    """
    try:
        text = path_info.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:
        text = path_info
    return "/" + text.lstrip("/")


#: The process's accountant (each forked worker gets a fresh queue and thread).
ACCOUNTANT = Accountant()
flush = ACCOUNTANT.flush
atexit.register(flush)

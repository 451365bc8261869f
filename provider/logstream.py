"""Follow a running job's ``algorithm.log`` over HTTP: the one streaming generator behind
``GET /api/services/computeLogs`` (V4) and ``GET /node/api/services/computeStreamableLogs`` (v2).

Bounded by construction: the file is read in :data:`CHUNK`-byte reads and each read is yielded
before the next (the WSGI server writes it to the socket, blocking, so a slow reader slows the
reads instead of growing a buffer); growth is noticed by polling every :data:`POLL_S` seconds;
the stream ends when the job is terminal (after the rest of the file) or at ``deadline``; past
``cap`` bytes it ends with :data:`TRUNCATED` (the whole log stays in the job's results).

:func:`sse` frames the same bytes as Server-Sent Events: one ``data:`` line per log line, then
``event: end`` when the log ends.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from flask import Response, request

CHUNK = 64 * 1024
POLL_S = 0.25
#: the most bytes of a log one stream sends (the whole log is a result of the job)
CAP = 64 * 1024 * 1024
TRUNCATED = (
    b"\n[tidewater] log stream truncated at %d bytes; the whole log is a result of the job\n"
)


def follow_log(
    ended: Callable[[], bool], locate: Callable[[], Path], deadline: float, cap: int = CAP
) -> Iterator[bytes]:
    """The log at ``locate()``'s bytes as they are written until ``ended()`` (or ``deadline``),
    at most ``cap`` bytes then :data:`TRUNCATED`. The log may move once (from the run's
    disk-share area into ``logs/``, same bytes): the new file is read on from the bytes sent.

    >>> import tempfile
    >>> log = Path(tempfile.mkdtemp()) / "algorithm.log"
    >>> _ = log.write_bytes(b"one\\ntwo\\n")
    >>> soon = time.monotonic() + 5
    >>> b"".join(follow_log(lambda: True, lambda: log, soon))
    b'one\\ntwo\\n'
    >>> b"".join(follow_log(lambda: True, lambda: log, soon, cap=5)).splitlines()[:2]
    [b'one', b't']
    """
    handle = None
    sent = 0

    def read() -> Iterator[bytes]:
        nonlocal sent
        assert handle is not None
        while chunk := handle.read(min(CHUNK, cap - sent + 1)):
            if sent + len(chunk) > cap:
                if cap > sent:
                    yield chunk[: cap - sent]
                sent = cap + 1
                yield TRUNCATED % cap
                return
            sent += len(chunk)
            yield chunk

    try:
        while True:
            done = ended() or time.monotonic() > deadline
            path = locate()
            try:
                moved = (
                    handle is not None and os.stat(path).st_ino != os.fstat(handle.fileno()).st_ino
                )
            except OSError:
                moved = False
            if handle is not None and moved:
                yield from read()  # what the old file still holds
                handle.close()
                handle = None
            if sent > cap:
                return
            if handle is None and path.is_file():
                handle = path.open("rb")
                handle.seek(sent)
            if handle is not None:
                yield from read()
                if sent > cap:
                    return
            if done:
                return
            time.sleep(POLL_S)
    finally:
        if handle is not None:
            handle.close()


def sse(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """``chunks`` as Server-Sent Events: ``data: <line>`` per line (a line longer than
    :data:`CHUNK` is sent in pieces), then ``event: end``.

    >>> b"".join(sse(iter([b"a\\nb", b"c\\n", b"tail"]))).decode()
    'data: a\\n\\ndata: bc\\n\\ndata: tail\\n\\nevent: end\\ndata: \\n\\n'
    """
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            yield b"data: " + line.rstrip(b"\r") + b"\n\n"
        while len(pending) > CHUNK:
            yield b"data: " + pending[:CHUNK] + b"\n\n"
            pending = pending[CHUNK:]
    if pending:
        yield b"data: " + pending + b"\n\n"
    yield b"event: end\ndata: \n\n"


def wants_sse() -> bool:
    """True when the request's ``Accept`` prefers ``text/event-stream`` to ``text/plain``."""
    best = request.accept_mimetypes.best_match(["text/plain", "text/event-stream"])
    return best == "text/event-stream"


def log_response(
    ended: Callable[[], bool], locate: Callable[[], Path], max_seconds: float
) -> Response:
    """The streaming response for the log at ``locate()``: SSE when the client asks for it,
    else chunked ``text/plain``; never cached nor buffered by a proxy."""
    stream = follow_log(ended, locate, time.monotonic() + max_seconds)
    if wants_sse():
        response = Response(sse(stream), status=200, mimetype="text/event-stream")
    else:
        response = Response(stream, status=200, mimetype="text/plain")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response

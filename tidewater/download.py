"""Streaming a large HTTP body into a file, hashed with sha256 on the way.

Receiving, hashing and writing each cost CPU per byte of the same order (on this 2-core VM, per
200 MiB: the socket copy ~0.05 s, sha256 with the SHA extensions ~0.14 s, ``write(2)`` into
fresh page-cache pages ~0.09 s), so one thread doing them in turn is bound by their sum.
:func:`save_body` splits them over two threads: the calling thread reads the socket into one of
two reused 1 MiB buffers and hashes it while the bytes are still in its core's cache, and a
second thread writes the buffers to the file, in order, meanwhile. Both threads' calls release
the GIL, so on two cores the download takes about max(read + hash, write) instead of the sum.
Nothing is copied in Python: the socket reads straight into the buffer (``http.client``'s
``readinto``), hashing and writing take views of it. One sha256 stream on one core is the
ceiling (~1.5-1.9 GB/s here, less on a loaded machine).

(Measured side by side on this VM, over loopback from a sendfile(2) server, 200 MiB each, medians
of 14-20 alternating downloads: read, hash and write in turn 0.68-0.73 GB/s; reading and writing
in one thread and hashing in another, 4 x 1 MiB buffers, 0.93-0.99 GB/s: the hashing thread,
reading bytes another core received, took 0.16-0.20 s where hashing them where they arrived
takes 0.14; this split with 2 x 1 MiB buffers 1.03-1.10 GB/s (4 buffers, or 512 KiB ones: 0.99-
1.06). Also tried: a writer and a hasher thread beside the reader (0.97), two threads taking
alternate chunks, each reading, hashing in turn and writing its own (0.94), and reading into a
preallocated, mapped file instead of writing (on ext4 here it cost as much CPU as ``write(2)``
or more once earlier writes were being flushed, and a full disk would fault rather than fail).)
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from queue import SimpleQueue
from types import TracebackType
from typing import IO, Any, Protocol

import requests

#: Bytes per socket read, and buffers in flight: one being read and hashed, one being written.
CHUNK = 1 << 20
BUFFERS = 2


class _ReadsInto(Protocol):
    def readinto(self, buffer: memoryview, /) -> int: ...


class TruncatedBodyError(IOError):
    """The connection closed before ``Content-Length`` bytes arrived."""


def body_reader(response: requests.Response) -> tuple[_ReadsInto, int | None]:
    """What reads ``response``'s body into a caller's buffer with no copy in between, and the
    byte count it must give (``None``: unknown). That is the ``http.client`` response under
    urllib3 when the body is not content-encoded (urllib3's own ``readinto`` reads into a new
    bytes object and copies it; ``http.client`` does not notice a body cut short, so the caller
    checks the count), else urllib3's decoding reader."""
    raw: Any = response.raw
    plain = response.headers.get("Content-Encoding", "identity").lower() == "identity"
    inner: Any = getattr(raw, "_fp", None)
    if plain and hasattr(inner, "readinto"):
        length = response.headers.get("Content-Length", "")
        return inner, int(length) if length.isdigit() else None
    raw.decode_content = True
    return raw, None


def save_body(response: requests.Response, target: Path) -> tuple[str, int]:
    """Write the body of a streamed ``response`` to ``target``; returns (sha256 hex, bytes).

    Raises :class:`TruncatedBodyError` when fewer bytes than ``Content-Length`` arrived (the
    file is left for the caller to remove), and whatever reading or writing raised (a failed
    write stops the download at the next buffer)."""
    reader, expected = body_reader(response)
    digest = hashlib.sha256()
    total = 0
    with target.open("wb") as handle, _Writer(handle) as writer:
        while size := reader.readinto(buffer := writer.free_buffer()):
            writer.write(buffer, size)
            digest.update(buffer[:size])  # while the writer thread writes the same bytes
            total += size
    if expected is not None and total != expected:
        raise TruncatedBodyError(f"got {total} of {expected} bytes")
    return digest.hexdigest(), total


class _Writer:
    """A thread that writes the views given, in order, and hands each buffer back once written.

    After a failed write it writes nothing more; :meth:`free_buffer` and leaving the ``with``
    block raise the error."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self._free: SimpleQueue[memoryview] = SimpleQueue()
        self._todo: SimpleQueue[tuple[memoryview, int] | None] = SimpleQueue()
        self._error: BaseException | None = None
        for _ in range(BUFFERS):
            self._free.put(memoryview(bytearray(CHUNK)))
        self._thread = threading.Thread(target=self._run, name="result-writer", daemon=True)

    def __enter__(self) -> _Writer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._todo.put(None)
        self._thread.join()
        if exc is None and self._error is not None:
            raise self._error

    def free_buffer(self) -> memoryview:
        """A whole buffer no write is using (waits for one)."""
        buffer = self._free.get()
        if self._error is not None:
            raise self._error
        return buffer

    def write(self, buffer: memoryview, size: int) -> None:
        """Queue the first ``size`` bytes of ``buffer`` (from :meth:`free_buffer`) for writing;
        the buffer goes back to the free ones once they are written."""
        self._todo.put((buffer, size))

    def _run(self) -> None:
        while (item := self._todo.get()) is not None:
            buffer, size = item
            if self._error is None:
                try:
                    # larger than the file's buffer: written straight through, in one write(2)
                    self._handle.write(buffer[:size])
                except BaseException as exc:  # raised in the reading thread
                    self._error = exc
            self._free.put(buffer)

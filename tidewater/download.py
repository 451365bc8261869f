"""Streaming a large HTTP body into a file, hashed with sha256 on the way.

Receiving, hashing and writing each cost CPU per byte of the same order here (on a 2-core VM,
per 500 MB: the socket copy ~0.15 s, sha256 with the SHA extensions ~0.3-0.4 s, ``write(2)``
into the page cache 0.2 s on tmpfs and 0.5-1.5 s on ext4), so one thread doing them in turn is
bound by their sum. :func:`save_body` overlaps them: the calling thread reads the socket into
one of a few reused buffers while one thread hashes and another writes the buffers already
read, each in order (the three calls release the GIL); a buffer is reused once both are done
with it. Nothing is copied in Python: the socket reads straight into the buffer
(``http.client``'s ``readinto``), hashing and writing take views of it. One sha256 stream is
the ceiling (~1.2-1.7 GB/s per core here); a shared, loaded machine gives less.

(Reading into a preallocated, mapped file instead of writing was tried: on ext4 here it cost
as much CPU as ``write(2)`` or more once earlier writes were being flushed, and a full disk
would fault rather than fail.)
"""

from __future__ import annotations

import hashlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from itertools import count
from pathlib import Path
from typing import Any, Protocol

import requests

#: Bytes per socket read, and buffers in flight (one being read, the rest hashed/written):
#: 2 MiB in all, so the hash and the write find the data still in the L2 cache.
CHUNK = 256 << 10
BUFFERS = 8


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
    file is left for the caller to remove)."""
    reader, expected = body_reader(response)
    digest = hashlib.sha256()
    buffers = [memoryview(bytearray(CHUNK)) for _ in range(BUFFERS)]
    in_flight: deque[tuple[Future[Any], Future[Any]]] = deque()
    total = 0
    with (
        target.open("wb") as handle,
        ThreadPoolExecutor(1, "sha256") as hasher,
        ThreadPoolExecutor(1, "write") as writer,
    ):
        try:
            for turn in count():
                if len(in_flight) == BUFFERS:  # the buffer about to be reused is done with
                    _finish(in_flight.popleft())
                buffer = buffers[turn % BUFFERS]
                size = reader.readinto(buffer)
                if not size:
                    break
                total += size
                chunk = buffer[:size]
                in_flight.append(
                    (hasher.submit(digest.update, chunk), writer.submit(handle.write, chunk))
                )
            while in_flight:
                _finish(in_flight.popleft())
        finally:  # a read or a hash/write failed: let the others finish with the buffers
            wait([future for pair in in_flight for future in pair])
    if expected is not None and total != expected:
        raise TruncatedBodyError(f"got {total} of {expected} bytes")
    return digest.hexdigest(), total


def _finish(pair: tuple[Future[Any], Future[Any]]) -> None:
    for future in pair:
        future.result()  # re-raises a failed hash or write here

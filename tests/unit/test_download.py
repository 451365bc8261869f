"""``tidewater.download.save_body`` against a real HTTP server on loopback: sized, chunked and
gzip bodies of many buffers' worth are saved and hashed whole, and a body cut short is
reported, never taken as whole."""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import requests

from tidewater import download
from tidewater.download import TruncatedBodyError, save_body
from tidewater.stack import serving

#: Several socket reads' worth, not a multiple of the chunk size.
BODY = os.urandom(3 * download.CHUNK + 12_345)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        headers: dict[str, str] = {}
        body = BODY
        if self.path == "/empty":
            body = b""
        if self.path == "/gzip":
            body = gzip.compress(BODY, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(body), 1_000_000):
                part = body[start : start + 1_000_000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_response(200)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path == "/short":  # promises the whole body, sends half, hangs up
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.close_connection = True  # one response per connection
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client stopped reading
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(name="server")
def server_fixture() -> Iterator[str]:
    with serving(_Handler) as url:
        yield url


@pytest.mark.parametrize("path", ["/sized", "/chunked", "/gzip"])
def test_save_body_writes_and_hashes_the_body(server: str, path: str, tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with requests.get(server + path, stream=True, timeout=30) as response:
        sha256, size = save_body(response, target)
    assert size == len(BODY)
    assert target.read_bytes() == BODY
    assert sha256 == hashlib.sha256(BODY).hexdigest()


def test_save_body_reports_a_body_cut_short(server: str, tmp_path: Path) -> None:
    with requests.get(server + "/short", stream=True, timeout=30) as response:
        with pytest.raises(TruncatedBodyError, match=f"of {len(BODY)} bytes"):
            save_body(response, tmp_path / "out.bin")


def test_save_body_of_an_empty_body(server: str, tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with requests.get(server + "/empty", stream=True, timeout=30) as response:
        assert save_body(response, target) == (hashlib.sha256(b"").hexdigest(), 0)
    assert target.read_bytes() == b""


def test_a_failing_write_raises_and_leaves_no_thread(server: str) -> None:
    """Writing to a full device (``/dev/full``: every write fails with ENOSPC) raises that
    error before the rest of the body is read; the writing thread is gone when save_body
    returns."""
    threads = {t.name for t in threading.enumerate()}
    with requests.get(server + "/sized", stream=True, timeout=30) as response:
        with pytest.raises(OSError) as failed:
            save_body(response, Path("/dev/full"))
        reader, _expected = download.body_reader(response)
        assert getattr(reader, "length", 0) > 0, "the whole body was read after the failure"
    assert failed.value.errno == errno.ENOSPC
    assert "result-writer" not in {t.name for t in threading.enumerate()} - threads

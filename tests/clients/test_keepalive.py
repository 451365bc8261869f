"""Keep-alive: a client that reuses one connection after 2-4 s of idleness always gets its answer.

Node 20's global agent, browsers and Python ``requests`` pools keep idle connections for
seconds; a server that closes them sooner races the client's next request ("socket hang up",
ECONNRESET). `tidewater serve` keeps them for 75 s. Raw sockets, so no client library retries
behind the test's back.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

import pytest

from tests.clients.conftest import Served
from tidewater.commands.serve import KEEPALIVE_SECONDS

pytestmark = pytest.mark.integration


def _request(sock: socket.socket, host: str, path: str) -> tuple[int, dict[str, str], bytes]:
    """Send one HTTP/1.1 GET on ``sock`` and read exactly one response (by Content-Length)."""
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n".encode())
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response (got {buffer!r})"
        buffer += chunk
    head, _, body = buffer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of a response"
        body += chunk
    assert len(body) == length
    return int(status_line.split()[1]), headers, body


def test_idle_keepalive_connection_is_reused(served: Served) -> None:
    assert KEEPALIVE_SECONDS > 5  # above Node's 5 s idle timeout
    parts = urlsplit(served.url)
    host = f"{parts.hostname}:{parts.port}"
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        status, headers, _ = _request(sock, host, "/")
        assert status == 200 and headers.get("connection", "").lower() != "close"
        for idle in (2.0, 3.0, 4.0, 2.5, 3.5):
            time.sleep(idle)  # the idleness under test, not a wait for a condition
            path = "/" if idle < 3 else "/api/services/computeEnvironments"
            status, headers, body = _request(sock, host, path)
            assert status == 200 and body, f"no answer after {idle} s idle"
            assert headers.get("connection", "").lower() != "close"

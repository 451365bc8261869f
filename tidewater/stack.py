"""Processes the demo and benchmarks start: a loopback file server and ``tidewater serve``.

Each is a context manager that stops what it started, so a failure or Ctrl-C leaves nothing
running.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def file_server(files: Mapping[str, bytes]) -> Iterator[str]:
    """Serve ``files`` (path → bytes) on 127.0.0.1; yields the base URL.

    ``files`` is read on every request, so a dict may be added to while it is being served.
    """

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path.split("?", 1)[0])
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    with serving(Handler) as url:
        yield url


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A threaded HTTP server of ``handler`` on a free loopback port, in a thread; yields its
    base URL and stops it on exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="loopback-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class ServerFailed(RuntimeError):
    """A server process exited or did not answer in time; the message holds its last output."""


@contextmanager
def http_server_process(
    command: list[str],
    ready_url: str,
    *,
    name: str,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    ready_timeout: float = 60.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` (called ``name`` in errors) in its own session, output to ``log_path``;
    yield it once ``ready_url`` answers 200, and stop its whole process group (SIGTERM, then
    SIGKILL) on exit."""
    with (log_path or Path(os.devnull)).open("ab") as log:
        process = subprocess.Popen(
            command,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            _wait_ready(process, name, ready_url, ready_timeout, log_path)
            yield process
        finally:
            stop_process_group(process)


@contextmanager
def provider_server(
    env: Mapping[str, str],
    *,
    port: int | None = None,
    extra_args: tuple[str, ...] = (),
    log_path: Path | None = None,
    ready_timeout: float = 60.0,
) -> Iterator[str]:
    """Run ``tidewater serve`` on 127.0.0.1 with ``env``; yields its base URL once ``GET /``
    answers, and stops it (SIGTERM, then SIGKILL) on exit."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "tidewater.cli", "serve"]
    command += ["--host", "127.0.0.1", "--port", str(port), *extra_args]
    with http_server_process(
        command,
        url + "/",
        name="tidewater serve",
        env=env,
        log_path=log_path,
        ready_timeout=ready_timeout,
    ):
        yield url


def _wait_ready(
    process: subprocess.Popen[bytes],
    name: str,
    url: str,
    timeout: float,
    log_path: Path | None,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerFailed(f"{name} exited with {process.returncode}{_tail(log_path)}")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise ServerFailed(f"{name} did not answer on {url} in {timeout:.0f} s{_tail(log_path)}")


def _tail(log_path: Path | None, lines: int = 5) -> str:
    if log_path is None or not log_path.exists():
        return ""
    tail = log_path.read_text(errors="replace").strip().splitlines()[-lines:]
    return (": " + " | ".join(tail)) if tail else ""


def stop_process_group(process: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM ``process``'s group, SIGKILL it after ``grace`` seconds; wait for the exit."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=5)

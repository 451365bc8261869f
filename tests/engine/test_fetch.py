"""fetch.py (SSRF guard) and storage.py's url files: size cap, hashing, unsupported types
(local server on 127.0.0.1 only)."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest

from operator_engine import fetch, storage
from operator_engine.fetch import FetchError, check_url, is_public_address
from operator_engine.storage import StorageConfig
from tests.engine.conftest import FileServer


def fetch_to_file(
    obj: dict[str, object], dest: Path, *, allow_non_public: bool, max_bytes: int
) -> tuple[int, str]:
    config = StorageConfig(allow_non_public=allow_non_public, timeout=30.0)
    return storage.fetch_to_file(obj, dest, config, max_bytes=max_bytes)


def fetch_bytes(
    obj: dict[str, object], *, allow_non_public: bool, max_bytes: int, timeout: float = 30
) -> bytes:
    config = StorageConfig(allow_non_public=allow_non_public, timeout=timeout)
    return storage.fetch_bytes(obj, config, max_bytes=max_bytes)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "100.64.0.1",
    ],
)
def test_non_public_addresses_are_recognised(address: str) -> None:
    assert not is_public_address(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_recognised(address: str) -> None:
    assert is_public_address(address)


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://x/y", "gopher://x", "http://", "nope"]
)
def test_check_url_refuses_other_schemes(url: str) -> None:
    with pytest.raises(FetchError):
        check_url(url, allow_non_public=True)


@pytest.mark.parametrize("url", ["http://127.0.0.1/x", "http://localhost:80/", "http://[::1]/"])
def test_check_url_refuses_loopback_unless_allowed(url: str) -> None:
    with pytest.raises(FetchError, match="non-public"):
        check_url(url, allow_non_public=False)
    check_url(url, allow_non_public=True)


def test_fetch_to_file_streams_and_hashes(file_server: FileServer, tmp_path: Path) -> None:
    body = b"a,b\n1,2\n" * 10_000
    file_server.files["/data.csv"] = body
    dest = tmp_path / "in" / "0"
    size, sha = fetch_to_file(
        {
            "type": "url",
            "url": file_server.url("/data.csv"),
            "method": "GET",
            "headers": {"X-Token": "abc"},
        },
        dest,
        allow_non_public=True,
        max_bytes=10**7,
    )
    assert (size, sha) == (len(body), hashlib.sha256(body).hexdigest())
    assert dest.read_bytes() == body
    assert file_server.requests[-1][2]["X-Token"] == "abc"


def test_loopback_refused_without_allow(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/x"] = b"secret"
    with pytest.raises(FetchError, match="non-public"):
        fetch_to_file(
            {"type": "url", "url": file_server.url("/x")},
            tmp_path / "x",
            allow_non_public=False,
            max_bytes=100,
        )
    assert not file_server.requests
    assert list(tmp_path.iterdir()) == []


def test_size_cap_enforced_and_nothing_left(file_server: FileServer, tmp_path: Path) -> None:
    file_server.files["/big"] = b"x" * 5000
    with pytest.raises(FetchError, match="limit"):
        fetch_to_file(
            {"type": "url", "url": file_server.url("/big")},
            tmp_path / "big",
            allow_non_public=True,
            max_bytes=4999,
        )
    assert list(tmp_path.iterdir()) == []


def test_http_error_and_unreachable(file_server: FileServer) -> None:
    with pytest.raises(FetchError, match="404"):
        fetch_bytes(
            {"type": "url", "url": file_server.url("/missing")},
            allow_non_public=True,
            max_bytes=100,
            timeout=5,
        )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    with pytest.raises(FetchError, match="cannot fetch"):
        fetch_bytes(
            {"type": "url", "url": f"http://127.0.0.1:{closed_port}/x"},
            allow_non_public=True,
            max_bytes=100,
            timeout=5,
        )


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ({"type": "s3", "bucket": "b"}, "unsupported file type"),
        ({"url": "http://a"}, "unsupported file type"),
        ({"type": "ipfs", "hash": "../etc"}, "not a content id"),
        ({"type": "arweave", "transactionId": "a/b"}, "not a transaction id"),
        ({"type": "graphql", "url": "http://a"}, "no 'query'"),
        ({"type": "smartcontract", "address": "0x1", "abi": {}, "chainId": 1}, "address"),
    ],
)
def test_unsupported_or_malformed(obj: dict[str, str], match: str) -> None:
    with pytest.raises(FetchError, match=match):
        fetch_bytes(obj, allow_non_public=True, max_bytes=10)


def test_dns_rebinding_refused_at_connect(
    file_server: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check runs again at connect time on the very addresses connected to: a host that
    passed the URL check but resolves to loopback when connecting (DNS rebinding) is refused."""
    file_server.files["/x"] = b"secret"
    real = socket.getaddrinfo
    calls = {"n": 0}

    def rebinding(host: str, port: int, *args: object, **kwargs: object) -> list:  # type: ignore[type-arg]
        if host == "rebind.example":
            calls["n"] += 1
            if calls["n"] == 1:  # first answer: a public address (never connected to)
                return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("8.8.8.8", port))]
            return real("127.0.0.1", port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(fetch.socket, "getaddrinfo", rebinding)
    with pytest.raises(FetchError, match="non-public"):
        fetch_bytes(
            {"type": "url", "url": f"http://rebind.example:{file_server.port}/x"},
            allow_non_public=False,
            max_bytes=100,
            timeout=5,
        )
    assert not file_server.requests


def test_post_method_and_bad_method(file_server: FileServer) -> None:
    file_server.files["/p"] = b"ok"
    assert (
        fetch_bytes(
            {"type": "url", "url": file_server.url("/p"), "method": "post"},
            allow_non_public=True,
            max_bytes=10,
        )
        == b"ok"
    )
    assert file_server.requests[-1][0] == "POST"
    with pytest.raises(FetchError, match="method"):
        fetch_bytes(
            {"type": "url", "url": file_server.url("/p"), "method": "DELETE"},
            allow_non_public=True,
            max_bytes=10,
        )

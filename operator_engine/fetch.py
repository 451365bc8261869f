"""SSRF-guarded HTTP for file objects (docs/protocol.md §7); :mod:`operator_engine.storage` owns the
storage types and sends every request of theirs (gateways included) through here.

Only http/https URLs are fetched. The host is resolved and every
address it resolves to must be public unless ``allow_non_public``; the TCP connection is then
made to one of those *checked* addresses (never a second lookup), so a DNS answer that changes
between check and connect (rebinding) cannot reach an internal service. Redirects go through the
same guard. Environment proxies are ignored (a proxy would connect on our behalf, unchecked).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import NewConnectionError

CHUNK = 64 * 1024
MAX_REDIRECTS = 5
_ALLOWED_METHODS = {"GET", "POST"}


class FetchError(Exception):
    """A file could not be fetched. ``str(exc)`` says why for the operator (it may name the
    host); ``exc.public`` says why without the URL or host, safe to show the job's owner (file
    URLs are the publisher's secret)."""

    def __init__(self, message: str, public: str | None = None) -> None:
        super().__init__(message)
        self.public = public or message


def is_public_address(address: str) -> bool:
    """True when ``address`` is a globally routable unicast IP (not loopback, private, …)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or not ip.is_global
    )


def _split(url: str) -> tuple[str, str, int]:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchError(f"malformed URL {url!r}: {exc}", "malformed URL") from None
    if parts.scheme not in ("http", "https"):
        raise FetchError(f"URL scheme {parts.scheme!r} not allowed (only http and https)")
    if not parts.hostname:
        raise FetchError(f"URL {url!r} has no host", "the URL has no host")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def resolve_checked(host: str, port: int, *, allow_non_public: bool) -> list[tuple[Any, ...]]:
    """Resolve ``host`` and return its getaddrinfo entries, refusing non-public targets."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(
            f"cannot resolve host {host!r}: {exc}", "cannot resolve the host"
        ) from None
    if not infos:
        raise FetchError(f"host {host!r} resolves to no address", "cannot resolve the host")
    if not allow_non_public:
        for info in infos:
            address = str(info[4][0])
            if not is_public_address(address):
                raise FetchError(
                    f"host {host!r} resolves to non-public address {address}; refused "
                    "(set ALLOW_NON_PUBLIC_IP=true only on a trusted network)",
                    "the file's host resolves to a non-public address (refused)",
                )
    return infos


def check_url(url: str, *, allow_non_public: bool) -> None:
    """Raise :class:`FetchError` unless ``url`` is http(s) and resolves to allowed addresses."""
    _scheme, host, port = _split(url)
    resolve_checked(host, port, allow_non_public=allow_non_public)


def _guarded_connect(conn: HTTPConnection, allow_non_public: bool) -> socket.socket:
    """Connect to an address that passed the check (the check and the connect share one
    lookup, which defeats DNS rebinding)."""
    try:
        infos = resolve_checked(conn.host, conn.port or 80, allow_non_public=allow_non_public)
    except FetchError as exc:
        raise NewConnectionError(conn, str(exc)) from exc
    last: OSError | None = None
    for family, socktype, proto, _name, sockaddr in infos:
        sock = socket.socket(family, socktype, proto)
        try:
            sock.settimeout(conn.timeout if isinstance(conn.timeout, int | float) else None)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock
    raise NewConnectionError(conn, f"Failed to establish a new connection: {last}")


class _GuardedHTTPConnection(HTTPConnection):
    allow_non_public = False

    def _new_conn(self) -> socket.socket:
        return _guarded_connect(self, self.allow_non_public)


class _GuardedHTTPSConnection(HTTPSConnection):
    allow_non_public = False

    def _new_conn(self) -> socket.socket:
        return _guarded_connect(self, self.allow_non_public)


class _GuardedAdapter(HTTPAdapter):
    """A requests adapter whose pools connect only to checked addresses."""

    def __init__(self, allow_non_public: bool) -> None:
        self._allow = allow_non_public
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        allow = self._allow
        http_conn = type("Conn", (_GuardedHTTPConnection,), {"allow_non_public": allow})
        https_conn = type("TLSConn", (_GuardedHTTPSConnection,), {"allow_non_public": allow})
        http_pool = type("Pool", (HTTPConnectionPool,), {"ConnectionCls": http_conn})
        https_pool = type("TLSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn})
        self.poolmanager.pool_classes_by_scheme = {"http": http_pool, "https": https_pool}


def _session(allow_non_public: bool) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no environment proxies: they would connect unchecked
    session.max_redirects = MAX_REDIRECTS
    adapter = _GuardedAdapter(allow_non_public)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


@contextmanager
def open_request(
    method: str,
    url: str,
    *,
    allow_non_public: bool,
    timeout: float,
    headers: dict[str, Any] | None = None,
    body: bytes | None = None,
    accept: frozenset[int] = frozenset({200}),
) -> Iterator[requests.Response]:
    """Send one HTTP request through the guarded session and yield the streamed answer.

    Raises :class:`FetchError` for a refused address (also after a redirect), a status not in
    ``accept`` (206 and 416 are accepted for a forwarded ``Range``), or a network error (also
    while the caller reads).
    """
    method = method.upper()
    if method not in _ALLOWED_METHODS:
        raise FetchError(f"HTTP method {method!r} not allowed (use GET or POST)")
    check_url(url, allow_non_public=allow_non_public)
    with _session(allow_non_public) as session:
        try:
            with session.request(
                method,
                url,
                headers={str(k): str(v) for k, v in (headers or {}).items()},
                data=body,
                stream=True,
                timeout=(min(timeout, 10.0), timeout),
                allow_redirects=True,
            ) as resp:
                if resp.status_code not in accept:
                    raise FetchError(
                        f"{method} {_redact(url)} answered HTTP {resp.status_code}",
                        f"the file server answered HTTP {resp.status_code}",
                    )
                yield resp
        except requests.TooManyRedirects:
            raise FetchError(f"more than {MAX_REDIRECTS} redirects") from None
        except requests.RequestException as exc:
            reason = _reason(exc)
            public = "non-public address refused" if "non-public" in reason else "unreachable"
            raise FetchError(
                f"cannot fetch {_redact(url)}: {reason}", f"cannot fetch the file ({public})"
            ) from None


@contextmanager
def open_url(
    file_obj: Any, *, allow_non_public: bool, timeout: float
) -> Iterator[requests.Response]:
    """Check an Ocean ``url`` file object and open it, streamed, through the guarded session
    (see :func:`open_request`; a malformed object raises :class:`FetchError` too)."""
    if not isinstance(file_obj, dict):
        raise FetchError("file object must be a JSON object")
    kind = file_obj.get("type")
    if kind != "url":
        raise FetchError(f"unsupported file type {kind!r} (only 'url' files can be fetched)")
    url = file_obj.get("url")
    if not isinstance(url, str) or not url:
        raise FetchError("url file object has no 'url'")
    method = str(file_obj.get("method") or "GET").upper()
    headers = file_obj.get("headers") or {}
    if not isinstance(headers, dict):
        raise FetchError("file object 'headers' must be an object")
    with open_request(
        method, url, allow_non_public=allow_non_public, timeout=timeout, headers=headers
    ) as resp:
        yield resp


def _redact(url: str) -> str:
    """The URL without query or credentials (they may be secrets of the publisher)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _reason(exc: BaseException) -> str:
    inner: BaseException | None = exc
    while inner is not None:
        if isinstance(inner, NewConnectionError):
            text = str(inner)
            return text.split(": ", 1)[-1] if ": " in text else text
        inner = inner.__context__ or inner.__cause__
    return type(exc).__name__ + (f": {exc}" if str(exc) else "")

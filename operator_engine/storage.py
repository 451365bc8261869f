"""Ocean file objects (docs/protocol.md §7): the one place that opens each storage type.

Jobs (:mod:`operator_engine.provision`), the provider's ``fileinfo`` and ``download`` and the
algorithm checksum check all read files through :func:`open_file`:

- ``url``: ``{type, url, method?, headers?}``, GET or POST;
- ``ipfs``: ``{type, hash}``, GET ``<IPFS_GATEWAY>/ipfs/<hash>``;
- ``arweave``: ``{type, transactionId}``, GET ``<ARWEAVE_GATEWAY>/<transactionId>``;
- ``graphql``: ``{type, url, query, headers?}``, POST ``{"query", "variables"}`` (variables:
  the order's ``userdata``);
- ``smartcontract``: ``{type, address, abi, chainId}``: an ``eth_call`` of the view function
  ``abi`` (its inputs taken by name from ``userdata``) on the RPC URL configured for
  ``chainId``; the file is the JSON text of the result, as the reference provider serves it.

Every HTTP request, to a gateway too, goes through :mod:`operator_engine.fetch`'s SSRF guard
(public addresses only unless ``allow_non_public``). RPC URLs are the operator's own settings,
so the engine needs no provider object: :class:`StorageConfig` carries everything.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from werkzeug.http import parse_content_range_header

from operator_engine.fetch import CHUNK, FetchError, open_request

#: fileinfo reads at most this much to compute a checksum (it is unsigned: anyone may ask).
MAX_CHECKSUM_BYTES = 100 * 1024**2
TYPES = ("url", "ipfs", "arweave", "graphql", "smartcontract")

_IPFS_HASH = re.compile(r"^[A-Za-z0-9]+(/[A-Za-z0-9._~%-]+)*$")
_ARWEAVE_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_FILENAME = re.compile(r"filename\*?=(?:UTF-8'')?\"?([^\";]+)\"?", re.IGNORECASE)


@dataclass(frozen=True)
class StorageConfig:
    """What opening a file needs: the SSRF switch, the timeout, the gateways and the chains'
    RPC URLs (the application shell builds it from its settings).

    An empty gateway is not configured: its files are refused. ``rpc_urls`` maps chain id →
    RPC URL; ``default_rpc_url`` (a single ``NETWORK_URL``) serves a chain id missing from it
    once its ``eth_chainId`` answers that id.
    """

    allow_non_public: bool
    timeout: float
    ipfs_gateway: str = ""
    arweave_gateway: str = ""
    rpc_urls: Mapping[int, str] = field(default_factory=dict)
    default_rpc_url: str | None = None


def rpc_urls_of(value: Any) -> tuple[dict[int, str], str | None]:
    """(chain id → URL, default URL) of a NETWORK_URL value: a URL, a JSON object, a mapping.

    >>> rpc_urls_of('{"8996": "http://a"}'), rpc_urls_of("http://b")
    (({8996: 'http://a'}, None), ({}, 'http://b'))
    """
    if isinstance(value, str) and value.strip().startswith("{"):
        value = json.loads(value)
    if isinstance(value, Mapping):
        return {int(k): str(v) for k, v in value.items()}, None
    if isinstance(value, str) and value.strip():
        return {}, value.strip()
    return {}, None


@dataclass
class OpenedFile:
    """An open file: its bytes (read once) and what is known before reading them.

    ``status`` is 200, or the upstream's 206 / 416 answer to a forwarded ``Range`` (then
    ``content_range`` is its ``Content-Range`` and ``content_length`` the part's length).
    """

    chunks: Iterator[bytes]
    content_length: int | None
    content_type: str
    filename: str | None
    status: int = 200
    content_range: str | None = None


def _text(file_obj: Mapping[str, Any], key: str, kind: str) -> str:
    value = file_obj.get(key)
    if not isinstance(value, str) or not value.strip():
        raise FetchError(f"{kind} file object has no '{key}'")
    return value.strip()


def _headers(file_obj: Mapping[str, Any]) -> dict[str, Any]:
    headers = file_obj.get("headers") or {}
    if not isinstance(headers, dict):
        raise FetchError("file object 'headers' must be an object")
    return headers


def _filename_of(disposition: str | None, url: str) -> str | None:
    if disposition:
        found = _FILENAME.search(disposition)
        if found:
            return unquote(found.group(1)).rsplit("/", 1)[-1] or None
    last = unquote(urlsplit(url).path).rstrip("/").rsplit("/", 1)[-1]
    return last or None


def _length(value: str | None) -> int | None:
    return int(value) if value and value.isascii() and value.isdigit() else None


@contextmanager
def _open_http(
    method: str,
    url: str,
    config: StorageConfig,
    *,
    headers: dict[str, Any] | None = None,
    body: bytes | None = None,
    filename: bool = True,
    byte_range: str | None = None,
) -> Iterator[OpenedFile]:
    headers = dict(headers or {})
    accept = frozenset({200})
    if byte_range and method.upper() == "GET":
        headers = {k: v for k, v in headers.items() if k.lower() != "range"}
        headers["Range"] = byte_range
        accept = frozenset({200, 206, 416})
    with open_request(
        method,
        url,
        allow_non_public=config.allow_non_public,
        timeout=config.timeout,
        headers=headers,
        body=body,
        accept=accept,
    ) as resp:
        content_range = resp.headers.get("Content-Range")
        if resp.status_code != 200 and not _is_content_range(content_range):
            raise FetchError(
                f"{_short(url)} answered {resp.status_code} without a valid Content-Range",
                f"the file server answered HTTP {resp.status_code}",
            )
        yield OpenedFile(
            chunks=resp.iter_content(CHUNK) if resp.status_code != 416 else iter(()),
            content_length=_length(resp.headers.get("Content-Length")),
            content_type=resp.headers.get("Content-Type", ""),
            filename=_filename_of(resp.headers.get("Content-Disposition"), url)
            if filename
            else None,
            status=resp.status_code,
            content_range=content_range if resp.status_code != 200 else None,
        )


def _is_content_range(value: str | None) -> bool:
    """True for a single-part ``bytes a-b/n`` or ``bytes */n`` header."""
    return bool(value) and parse_content_range_header(value) is not None


def _short(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}{parts.path}"


def _gateway(base: str, name: str) -> str:
    if not base.startswith(("http://", "https://")):
        raise FetchError(f"{name} {base!r} is not an http(s) URL", f"{name} is not configured")
    return base.rstrip("/")


def call_contract(
    file_obj: Mapping[str, Any], config: StorageConfig, userdata: Mapping[str, Any] | None
) -> bytes:
    """The JSON text of a ``smartcontract`` file's view-function result (an ``eth_call``)."""
    from web3 import Web3
    from web3.exceptions import Web3Exception

    address = _text(file_obj, "address", "smartcontract")
    if not _ADDRESS.match(address):
        raise FetchError("smartcontract 'address' is not an address")
    abi = file_obj.get("abi")
    if isinstance(abi, list) and len(abi) == 1:
        abi = abi[0]
    if not isinstance(abi, dict) or abi.get("type", "function") != "function":
        raise FetchError("smartcontract 'abi' must be one function's ABI object")
    name = abi.get("name")
    if not isinstance(name, str) or not name:
        raise FetchError("smartcontract 'abi' has no function name")
    if abi.get("stateMutability") not in ("view", "pure"):
        raise FetchError("smartcontract files may only call view or pure functions")
    try:
        chain_id = int(file_obj.get("chainId"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise FetchError("smartcontract file object has no numeric 'chainId'") from None
    url = config.rpc_urls.get(chain_id) or config.default_rpc_url
    if not url:
        raise FetchError(f"chain {chain_id} is not served by this provider")
    inputs = abi.get("inputs") or []
    args: list[Any] = []
    for item in inputs:
        key = str(item.get("name")) if isinstance(item, dict) else ""
        if not userdata or key not in userdata:
            raise FetchError(f"smartcontract input {key!r} is missing from userdata")
        value = userdata[key]
        if item.get("type") == "address" and isinstance(value, str):
            value = Web3.to_checksum_address(value)
        args.append(value)
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": config.timeout}))
    try:
        if chain_id not in config.rpc_urls and int(w3.eth.chain_id) != chain_id:
            raise FetchError(f"chain {chain_id} is not served by this provider")
        contract = w3.eth.contract(address=Web3.to_checksum_address(address), abi=[abi])
        result = contract.functions[name](*args).call()
    except FetchError:
        raise
    except (Web3Exception, ValueError, TypeError, OSError) as exc:
        raise FetchError(
            f"eth_call of {name} on {address} (chain {chain_id}) failed: {exc}",
            "the contract call failed",
        ) from None
    return json.dumps(result, default=_jsonable).encode("utf-8")


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


@contextmanager
def open_file(
    file_obj: Any,
    config: StorageConfig,
    *,
    userdata: Mapping[str, Any] | None = None,
    byte_range: str | None = None,
) -> Iterator[OpenedFile]:
    """Open an Ocean file object of any supported type; raise :class:`FetchError` when it is
    malformed, refused by the SSRF guard, or cannot be read.

    ``byte_range`` (a ``Range`` header value) is forwarded to GET-based HTTP storage (``url``
    GET, ``ipfs``, ``arweave``); the answer's ``status`` says whether the server honoured it.
    """
    if not isinstance(file_obj, dict):
        raise FetchError("file object must be a JSON object")
    kind = file_obj.get("type")
    if kind == "url":
        url = _text(file_obj, "url", "url")
        method = str(file_obj.get("method") or "GET")
        headers = _headers(file_obj)
        with _open_http(method, url, config, headers=headers, byte_range=byte_range) as opened:
            yield opened
    elif kind == "ipfs":
        cid = _text(file_obj, "hash", "ipfs").removeprefix("ipfs://")
        if not _IPFS_HASH.match(cid) or ".." in cid.split("/"):
            raise FetchError("ipfs 'hash' is not a content id")
        url = f"{_gateway(config.ipfs_gateway, 'IPFS_GATEWAY')}/ipfs/{cid}"
        named = "/" in cid
        with _open_http("GET", url, config, filename=named, byte_range=byte_range) as opened:
            yield opened
    elif kind == "arweave":
        tx_id = _text(file_obj, "transactionId", "arweave")
        if not _ARWEAVE_ID.match(tx_id):
            raise FetchError("arweave 'transactionId' is not a transaction id")
        url = f"{_gateway(config.arweave_gateway, 'ARWEAVE_GATEWAY')}/{tx_id}"
        with _open_http("GET", url, config, filename=False, byte_range=byte_range) as opened:
            yield opened
    elif kind == "graphql":
        url = _text(file_obj, "url", "graphql")
        query = _text(file_obj, "query", "graphql")
        body = json.dumps({"query": query, "variables": dict(userdata or {})}).encode("utf-8")
        headers = {"Content-Type": "application/json", **_headers(file_obj)}
        with _open_http("POST", url, config, headers=headers, body=body, filename=False) as op:
            yield op
    elif kind == "smartcontract":
        data = call_contract(file_obj, config, userdata)
        yield OpenedFile(iter([data]) if data else iter(()), len(data), "application/json", None)
    else:
        raise FetchError(
            f"unsupported file type {kind!r} (supported: {', '.join(TYPES)})",
            "unsupported file type",
        )


def stream(
    file_obj: Any,
    config: StorageConfig,
    *,
    max_bytes: int,
    userdata: Mapping[str, Any] | None = None,
) -> Iterator[bytes]:
    """The file's bytes, refusing more than ``max_bytes`` (declared or read)."""
    with open_file(file_obj, config, userdata=userdata) as opened:
        if opened.content_length is not None and opened.content_length > max_bytes:
            raise FetchError(
                f"file is {opened.content_length} bytes, over the {max_bytes}-byte limit"
            )
        total = 0
        for chunk in opened.chunks:
            total += len(chunk)
            if total > max_bytes:
                raise FetchError(f"file exceeds the {max_bytes}-byte limit")
            yield chunk


def fetch_to_file(
    file_obj: Any,
    dest: Path,
    config: StorageConfig,
    *,
    max_bytes: int,
    userdata: Mapping[str, Any] | None = None,
) -> tuple[int, str]:
    """Stream ``file_obj`` into ``dest``; return (size, sha256 hex). Nothing is left at
    ``dest`` on failure (the bytes land in a temporary file renamed into place at the end)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with tempfile.NamedTemporaryFile(dir=dest.parent, prefix=".fetch-", delete=False) as tmp:
        tmp_path = Path(tmp.name)
        try:
            for chunk in stream(file_obj, config, max_bytes=max_bytes, userdata=userdata):
                tmp.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        except BaseException:
            tmp.close()
            tmp_path.unlink(missing_ok=True)
            raise
    tmp_path.replace(dest)
    return size, digest.hexdigest()


def fetch_bytes(
    file_obj: Any,
    config: StorageConfig,
    *,
    max_bytes: int,
    userdata: Mapping[str, Any] | None = None,
) -> bytes:
    """Fetch ``file_obj`` into memory (at most ``max_bytes``)."""
    return b"".join(stream(file_obj, config, max_bytes=max_bytes, userdata=userdata))


def file_info(
    file_obj: Any,
    config: StorageConfig,
    *,
    checksum: bool = False,
    userdata: Mapping[str, Any] | None = None,
    max_checksum_bytes: int = MAX_CHECKSUM_BYTES,
) -> dict[str, Any]:
    """``fileinfo``'s answer for one file: ``valid``, ``contentLength``, ``contentType``,
    ``type``, ``filename`` when known, and with ``checksum`` the sha256 of the body (read up
    to ``max_checksum_bytes``; a larger file gets no checksum). Never raises for a bad file."""
    kind = file_obj.get("type") if isinstance(file_obj, dict) else None
    info: dict[str, Any] = {"valid": False, "contentLength": "", "contentType": "", "type": kind}
    try:
        with open_file(file_obj, config, userdata=userdata) as opened:
            length = opened.content_length
            info["contentType"] = opened.content_type
            if opened.filename:
                info["filename"] = opened.filename
            if checksum and (length is None or length <= max_checksum_bytes):
                digest, read = hashlib.sha256(), 0
                for chunk in opened.chunks:
                    read += len(chunk)
                    if read > max_checksum_bytes:
                        break
                    digest.update(chunk)
                else:
                    info["checksum"] = digest.hexdigest()
                    info["checksumType"] = "sha256"
                    length = read
            info["contentLength"] = "" if length is None else str(length)
            info["valid"] = True
    except (FetchError, OSError, ValueError):
        return {"valid": False, "contentLength": "", "contentType": "", "type": kind}
    return info

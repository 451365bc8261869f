"""How each setting's text is read: booleans, numbers, seconds, address lists, chain maps,
gateway URLs and private keys, each refused with a :class:`SettingsError` naming the variable
and how to fix it. :mod:`tidewater.settings` declares the settings."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_KEY_RE = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
_ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
_URL_RE = re.compile(r"^(https?|wss?)://\S+$")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message says which and how to fix it."""


def read_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(f"{name}={raw!r} is not a boolean: use true or false")


def read_int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    return value


def read_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """A positive number of seconds (fractions allowed)."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise SettingsError(f"{name}={raw!r} must be a positive number of seconds")
    return value


def read_addresses(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list of 0x addresses, lowercased; empty when unset."""
    items = [item.strip() for item in (env.get(name) or "").replace("\n", ",").split(",")]
    bad = [item for item in items if item and not _ADDRESS_RE.match(item)]
    if bad:
        raise SettingsError(f"{name}: {bad[0]!r} is not an address (0x followed by 40 hex digits)")
    return tuple(item.lower() for item in items if item)


def _chain_map(raw: str, name: str, what: str) -> dict[int, str]:
    """A JSON object of decimal chain ids → strings (``{"8996": "…"}``), validated."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{name} is not valid JSON ({exc.msg}): {_CHAIN_MAP_HINT}") from None
    if not isinstance(data, dict) or not data:
        raise SettingsError(f"{name} must be a non-empty JSON object: {_CHAIN_MAP_HINT}")
    mapping: dict[int, str] = {}
    for key, value in data.items():
        text = str(key).strip()
        if not (text.isascii() and text.isdigit()) or int(text) <= 0:
            raise SettingsError(f"{name}: {key!r} is not a chain id (a positive integer)")
        if not isinstance(value, str):
            raise SettingsError(f"{name}: the value for chain {text} must be {what} (a string)")
        mapping[int(text)] = value.strip()
    return mapping


_CHAIN_MAP_HINT = 'use one value, or an object of chain id → value like {"8996": "…"}'


def read_network_urls(raw: str) -> dict[int, str]:
    """NETWORK_URL as chain id → URL; a plain URL is chain ``0`` (its id is read from the node)."""
    text = raw.strip()
    urls = _chain_map(text, "NETWORK_URL", "an RPC URL") if text.startswith("{") else {0: text}
    for chain_id, url in urls.items():
        if not _URL_RE.match(url):
            where = f" for chain {chain_id}" if chain_id else ""
            raise SettingsError(
                f"NETWORK_URL={url!r}{where} is not an RPC URL: use http://host:port"
            )
    return urls


def read_private_keys(raw: str) -> dict[int, str]:
    """PROVIDER_PRIVATE_KEY as chain id → normalized key; one key is chain ``0`` (every chain)."""
    text = raw.strip()
    if not text.startswith("{"):
        return {0: normalize_private_key(text)}
    keys = _chain_map(text, "PROVIDER_PRIVATE_KEY", "a private key")
    return {
        chain_id: normalize_private_key(key, f"PROVIDER_PRIVATE_KEY for chain {chain_id}")
        for chain_id, key in keys.items()
    }


def read_gateway(env: Mapping[str, str], name: str, default: str) -> str:
    """An http(s) gateway base URL, without a trailing slash."""
    value = (env.get(name) or default).strip().rstrip("/")
    if not re.match(r"^https?://[^/?#]+", value):
        raise SettingsError(f"{name}={value!r} is not an http(s) URL: use e.g. {default}")
    return value


def normalize_private_key(raw: str, name: str = "PROVIDER_PRIVATE_KEY") -> str:
    """Return ``raw`` as a 0x-prefixed 64-hex-digit key, or raise :class:`SettingsError`."""
    value = raw.strip()
    if not _KEY_RE.match(value):
        raise SettingsError(f"{name} must be 32 bytes of hex (0x followed by 64 hex digits)")
    return value if value.startswith("0x") else "0x" + value


_DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DIGEST_IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._/:-]*@sha256:[0-9a-f]{64}$")
_IP_URL_RE = re.compile(r"^http://(\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\])(:\d{1,5})?/?$")


def read_kubernetes(env: Mapping[str, str], default_namespace: str) -> dict[str, Any]:
    """The Kubernetes backend's settings, validated (see docs/kubernetes.md)."""
    namespace = (env.get("TIDEWATER_KUBERNETES_NAMESPACE") or default_namespace).strip()
    if not _DNS_LABEL_RE.match(namespace):
        raise SettingsError(
            f"TIDEWATER_KUBERNETES_NAMESPACE={namespace!r} is not a namespace name "
            "(lower-case letters, digits and '-', at most 63)"
        )
    image = (env.get("TIDEWATER_KUBERNETES_IMAGE") or "").strip() or None
    if image is not None and not _DIGEST_IMAGE_RE.match(image):
        raise SettingsError(
            f"TIDEWATER_KUBERNETES_IMAGE={image!r} is not pinned by digest: use "
            "registry/tidewater@sha256:<64 hex digits>"
        )
    url = (env.get("TIDEWATER_KUBERNETES_INTERNAL_URL") or "").strip().rstrip("/") or None
    if url is not None and not _IP_URL_RE.match(url):
        raise SettingsError(
            f"TIDEWATER_KUBERNETES_INTERNAL_URL={url!r} must be http://<IP address>[:port]: "
            "job pods get no DNS, and their egress is opened to that address alone"
        )
    kubeconfig = (env.get("KUBECONFIG") or "").strip()
    return {
        "kubeconfig": kubeconfig or None,
        "kubernetes_namespace": namespace,
        "kubernetes_image": image,
        "kubernetes_internal_url": url,
    }

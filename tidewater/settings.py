"""Every setting tidewater reads, in one typed place.

Settings are read once into a frozen dataclass with :meth:`Settings.from_env`; tests pass a
plain mapping. A missing or malformed value raises :class:`SettingsError` whose message names
the variable and says how to fix it (the parsers: :mod:`tidewater.setting_values`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from tidewater.setting_values import (
    SettingsError,
    normalize_private_key,
    read_addresses,
    read_bool,
    read_gateway,
    read_int,
    read_kubernetes,
    read_network_urls,
    read_private_keys,
    read_seconds,
)

__all__ = ["DEBIAN_MIRROR", "VARIABLES", "Settings", "SettingsError", "normalize_private_key"]

_FERNET_RE = re.compile(r"^[A-Za-z0-9_-]{43}=$")
DISK_QUOTA_MODES = ("auto", "loop", "poll")


def _setting(default: Any, env: str, meaning: str, *, shown: str | None = None, **kw: Any) -> Any:
    """A Settings field read from the variable ``env``: its default is written here only
    (``shown`` replaces it in :data:`VARIABLES` when the default is derived)."""
    meta = {"env": env, "meaning": meaning, "shown": shown}
    return field(default=default, metadata=meta, **kw)


_DATA_DIR = Path(".tidewater")
#: Default of TIDEWATER_DEBIAN_MIRROR (read by :mod:`tidewater.images` when it builds images).
DEBIAN_MIRROR = "http://deb.debian.org/debian"


@dataclass(frozen=True)
class Settings:
    """tidewater's configuration. Build it with :meth:`from_env`.

    Each field's default is the one default of its variable (see :data:`VARIABLES`).
    Chains: ``network_urls`` maps chain id → RPC URL when NETWORK_URL is a JSON object; when
    it is empty the one chain is ``network_url`` (its id read from the node). Keys:
    ``provider_private_key`` is the key of every chain, unless ``provider_private_keys`` maps a
    chain id to its own key. Use :meth:`rpc_urls` and :meth:`private_key_for`.
    """

    network_url: str = _setting(
        "http://127.0.0.1:8545",
        "NETWORK_URL",
        'JSON-RPC URL of the chain, or a JSON object chain id → URL (`{"8996": "http://…"}`)',
    )
    provider_private_key: str | None = _setting(
        None,
        "PROVIDER_PRIVATE_KEY",
        "0x-hex key that signs provider fees and decrypts; or a JSON object chain id → key",
        repr=False,
    )
    # hash=False: a dict cannot be hashed, and Settings stays hashable without them
    network_urls: dict[int, str] = field(default_factory=dict, hash=False)
    provider_private_keys: dict[int, str] = field(default_factory=dict, repr=False, hash=False)
    data_dir: Path = _setting(
        _DATA_DIR,
        "TIDEWATER_DATA_DIR",
        "jobs, results, logs and the SQLite store",
        shown="./.tidewater",
    )
    address_file: Path = _setting(
        _DATA_DIR / "address.json",
        "ADDRESS_FILE",
        "Ocean address.json of the contracts",
        shown="$TIDEWATER_DATA_DIR/address.json",
    )
    db_url: str = _setting(
        f"sqlite:///{_DATA_DIR / 'tidewater.db'}",
        "TIDEWATER_DB",
        "SQLAlchemy URL of the store",
        shown="sqlite:///$TIDEWATER_DATA_DIR/tidewater.db",
    )
    allow_non_public_ip: bool = _setting(
        False, "ALLOW_NON_PUBLIC_IP", "allow dataset/algorithm URLs on loopback/private nets"
    )
    ipfs_gateway: str = _setting(
        "https://ipfs.io",
        "IPFS_GATEWAY",
        "gateway `ipfs` files are fetched from (`/ipfs/<hash>`)",
    )
    arweave_gateway: str = _setting(
        "https://arweave.net", "ARWEAVE_GATEWAY", "gateway `arweave` files are fetched from"
    )
    environments_file: Path | None = _setting(
        None,
        "TIDEWATER_ENVIRONMENTS",
        "JSON or YAML file of compute envs",
        shown="(built-in free env)",
    )
    workers: int = _setting(
        2, "TIDEWATER_WORKERS", "engine worker threads (`tidewater serve`'s engine process)"
    )
    stop_grace: int = _setting(
        20, "TIDEWATER_STOP_GRACE", "seconds a running algorithm may finish in after SIGTERM"
    )
    lease_seconds: float = _setting(
        30.0,
        "TIDEWATER_LEASE_SECONDS",
        "an engine worker's lease on its jobs: each heartbeat stores its expiry, and a job "
        "whose lease expired is recovered by another worker",
    )
    poll_seconds: float = _setting(
        0.5, "TIDEWATER_POLL_SECONDS", "how often an idle engine worker looks for queued jobs"
    )
    sweep_seconds: float = _setting(
        15.0,
        "TIDEWATER_SWEEP_SECONDS",
        "seconds between sweeps (recover abandoned jobs, reconcile Docker and the disk)",
    )
    fetch_timeout: float = _setting(
        30.0,
        "TIDEWATER_FETCH_TIMEOUT",
        "seconds a job's input download may wait for the server (connecting: at most 10)",
    )
    pull_images: bool = _setting(
        True, "TIDEWATER_PULL_IMAGES", "pull an algorithm image the Docker engine lacks"
    )
    aquarius_url: str | None = _setting(
        None, "AQUARIUS_URL", "resolve DDOs through an Aquarius instead of the indexer"
    )
    authorized_decrypters: tuple[str, ...] = _setting(
        (),
        "AUTHORIZED_DECRYPTERS",
        "comma-separated addresses that may decrypt DDOs",
        shown="(provider only)",
    )
    log_level: str = _setting(
        "INFO", "TIDEWATER_LOG_LEVEL", "log level (DEBUG, INFO, WARNING, ERROR)"
    )
    disk_quota: str = _setting(
        "auto",
        "TIDEWATER_DISK_QUOTA",
        "how a job's disk share is enforced: loop (ext4 image, needs root), poll, auto",
    )
    metrics_public: bool = _setting(
        False, "TIDEWATER_METRICS_PUBLIC", "serve /metrics to any client, not only loopback"
    )
    credentials_key: str | None = _setting(
        None,
        "TIDEWATER_CREDENTIALS_KEY",
        "Fernet key that encrypts admin platform credentials at rest",
        shown="(none: credentials disabled)",
        repr=False,
    )
    kubeconfig: str | None = _setting(  # one path, or several joined by ":" (kubectl's rule)
        None,
        "KUBECONFIG",
        "kubeconfig file of the cluster the Kubernetes backend runs jobs on",
        shown="(in-cluster config, else ~/.kube/config)",
    )
    kubernetes_namespace: str = _setting(
        "tidewater-jobs",
        "TIDEWATER_KUBERNETES_NAMESPACE",
        "namespace the Kubernetes backend creates its Jobs and NetworkPolicies in",
    )
    kubernetes_image: str | None = _setting(
        None,
        "TIDEWATER_KUBERNETES_IMAGE",
        "tidewater image pinned by digest (`name@sha256:…`) that moves a Kubernetes job's data",
    )
    kubernetes_internal_url: str | None = _setting(
        None,
        "TIDEWATER_KUBERNETES_INTERNAL_URL",
        "URL job pods reach the provider's `/internal` endpoints at (an IP address: no DNS)",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``environ`` (default: ``os.environ``), validating each."""
        env = os.environ if environ is None else environ
        d = _DEFAULTS
        data_dir = Path(env.get("TIDEWATER_DATA_DIR") or d.data_dir).expanduser()
        keys = (
            read_private_keys(env["PROVIDER_PRIVATE_KEY"])
            if env.get("PROVIDER_PRIVATE_KEY")
            else {}
        )
        urls = read_network_urls(env.get("NETWORK_URL") or d.network_url)
        if 0 not in urls:
            missing = sorted(set(urls) - set(keys)) if keys and 0 not in keys else []
            if missing:
                raise SettingsError(
                    f"PROVIDER_PRIVATE_KEY has no key for chain {missing[0]} of NETWORK_URL: "
                    "add it, or use one key for every chain"
                )
        envs_file = env.get("TIDEWATER_ENVIRONMENTS") or None
        log_level = (env.get("TIDEWATER_LOG_LEVEL") or d.log_level).upper()
        if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise SettingsError(f"TIDEWATER_LOG_LEVEL={log_level!r}: use DEBUG/INFO/WARNING/ERROR")
        disk_quota = (env.get("TIDEWATER_DISK_QUOTA") or d.disk_quota).strip().lower()
        if disk_quota not in DISK_QUOTA_MODES:
            raise SettingsError(
                f"TIDEWATER_DISK_QUOTA={disk_quota!r}: use {', '.join(DISK_QUOTA_MODES)}"
            )
        credentials_key = (env.get("TIDEWATER_CREDENTIALS_KEY") or "").strip() or None
        if credentials_key is not None and not _FERNET_RE.match(credentials_key):
            raise SettingsError(
                "TIDEWATER_CREDENTIALS_KEY is not a Fernet key (44 characters of url-safe "
                "base64): make one with python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'"
            )
        return cls(
            network_url=next(iter(urls.values())),
            provider_private_key=keys.get(0),
            network_urls={} if 0 in urls else urls,
            provider_private_keys={} if 0 in keys else keys,
            data_dir=data_dir,
            address_file=Path(env.get("ADDRESS_FILE") or data_dir / "address.json").expanduser(),
            db_url=env.get("TIDEWATER_DB") or f"sqlite:///{data_dir / 'tidewater.db'}",
            allow_non_public_ip=read_bool(env, "ALLOW_NON_PUBLIC_IP", d.allow_non_public_ip),
            ipfs_gateway=read_gateway(env, "IPFS_GATEWAY", d.ipfs_gateway),
            arweave_gateway=read_gateway(env, "ARWEAVE_GATEWAY", d.arweave_gateway),
            environments_file=Path(envs_file).expanduser() if envs_file else None,
            workers=read_int(env, "TIDEWATER_WORKERS", d.workers),
            stop_grace=read_int(env, "TIDEWATER_STOP_GRACE", d.stop_grace),
            lease_seconds=read_seconds(env, "TIDEWATER_LEASE_SECONDS", d.lease_seconds),
            poll_seconds=read_seconds(env, "TIDEWATER_POLL_SECONDS", d.poll_seconds),
            sweep_seconds=read_seconds(env, "TIDEWATER_SWEEP_SECONDS", d.sweep_seconds),
            fetch_timeout=read_seconds(env, "TIDEWATER_FETCH_TIMEOUT", d.fetch_timeout),
            pull_images=read_bool(env, "TIDEWATER_PULL_IMAGES", d.pull_images),
            aquarius_url=env.get("AQUARIUS_URL") or d.aquarius_url,
            authorized_decrypters=read_addresses(env, "AUTHORIZED_DECRYPTERS"),
            log_level=log_level,
            disk_quota=disk_quota,
            metrics_public=read_bool(env, "TIDEWATER_METRICS_PUBLIC", d.metrics_public),
            credentials_key=credentials_key,
            **read_kubernetes(env, d.kubernetes_namespace),
        )

    def with_(self, **changes: Any) -> Settings:
        """Return a copy with ``changes`` applied (tests and the CLI use this)."""
        return replace(self, **changes)

    def rpc_urls(self) -> dict[int, str]:
        """Chain id → RPC URL; a single plain NETWORK_URL is ``{0: url}`` (id read from it)."""
        return dict(self.network_urls) if self.network_urls else {0: self.network_url}

    def private_key_for(self, chain_id: int) -> str:
        """The provider key that serves ``chain_id``; SettingsError when there is none."""
        if self.provider_private_keys:
            key = self.provider_private_keys.get(chain_id)
            if key is None:
                raise SettingsError(
                    f"PROVIDER_PRIVATE_KEY has no key for chain {chain_id}: add it to the "
                    "JSON object, or use one key for every chain"
                )
            return key
        return self.require_private_key()

    def require_private_key(self) -> str:
        """The provider key (with per-chain keys: the first chain's; prefer
        :meth:`private_key_for`), or a :class:`SettingsError` saying how to set it."""
        if self.provider_private_keys:
            return next(iter(self.provider_private_keys.values()))
        if not self.provider_private_key:
            raise SettingsError(
                "PROVIDER_PRIVATE_KEY is not set: export the provider's 0x-hex private key "
                "(`tidewater chain` prints a funded development key)"
            )
        return self.provider_private_key


_DEFAULTS = Settings()


def _shown(value: Any) -> str:
    """A default as the configuration table writes it."""
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


#: Variables read outside :class:`Settings` (client-side commands), with default and meaning.
_CLIENT_VARIABLES: dict[str, tuple[str, str]] = {
    "DEPLOYER_PRIVATE_KEY": ("(none)", "funded key `tidewater chain --rpc URL` deploys with"),
    "TIDEWATER_ADMIN_TOKEN": ("(none)", "admin token `tidewater admin` sends (client side only)"),
    "TIDEWATER_DEBIAN_MIRROR": (
        DEBIAN_MIRROR,
        "Debian mirror the local algorithm images are bootstrapped from",
    ),
}

#: Every environment variable tidewater reads, with its default as shown and its meaning (the
#: README's configuration table is checked against this by a test).
VARIABLES: dict[str, tuple[str, str]] = {
    **{
        f.metadata["env"]: (f.metadata["shown"] or _shown(f.default), f.metadata["meaning"])
        for f in fields(Settings)
        if "env" in f.metadata
    },
    **_CLIENT_VARIABLES,
}

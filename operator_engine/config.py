"""The engine's own configuration: what it needs to run jobs, nothing about HTTP or the CLI.

The application shell builds it from its settings (``tidewater.engine_config``); the engine
imports nothing from the shell, so it can run under another one. No field has a default: the
shell's settings own every default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from operator_engine.storage import StorageConfig


@dataclass(frozen=True)
class EngineConfig:
    """Where the engine keeps its state, how it runs jobs, and its timings.

    ``provider_keys`` maps chain id → the provider's key (chain ``0``: the key of every chain
    without its own); it signs receipts and is the escrow payee. ``network_url`` and
    ``address_file`` name the chain and contracts escrow settlements use.
    """

    data_dir: Path
    db_url: str
    environments_file: Path | None
    #: the SSRF switch, gateways and RPC URLs jobs open their files with
    storage: StorageConfig
    pull_images: bool
    #: how a job's disk share is enforced: ``loop``, ``poll`` or ``auto``
    disk_quota: str
    #: the kubernetes backend: the kubeconfig file (None: in-cluster, else ~/.kube/config),
    #: the namespace its jobs run in, the tidewater image (by digest) that moves their data,
    #: and the URL job pods reach this provider's internal transfer endpoints at
    kubeconfig: str | None
    kubernetes_namespace: str
    kubernetes_image: str | None
    kubernetes_internal_url: str | None
    credentials_key: str | None = field(repr=False)
    network_url: str
    address_file: Path
    provider_keys: Mapping[int, str] = field(repr=False, hash=False)
    #: a worker's lease on its jobs (each heartbeat stores its expiry)
    lease_seconds: float
    #: how often an idle worker looks for queued jobs
    poll_seconds: float
    #: seconds between sweeps (recovery, reconciling the runner and the disk)
    sweep_seconds: float
    #: how long a job's input download may wait for its server
    fetch_timeout: float

    def with_(self, **changes: Any) -> EngineConfig:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)

    @property
    def allow_non_public_ip(self) -> bool:
        return self.storage.allow_non_public

    @property
    def has_key(self) -> bool:
        return bool(self.provider_keys)

    def key_for(self, chain_id: int) -> str | None:
        """The provider's key on ``chain_id`` (its own, else the every-chain key); None when
        only other chains have keys."""
        return self.provider_keys.get(chain_id) or self.provider_keys.get(0)

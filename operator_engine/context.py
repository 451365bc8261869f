"""What every pipeline stage receives, and what it answers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from operator_engine.credentials import Credential
from operator_engine.lifecycle import Kind
from operator_engine.models import ComputeEnvironment, JobRequest
from operator_engine.runner import ContainerRunner
from operator_engine.storage import StorageConfig
from operator_engine.workspace import CONFIGURE_LOG, PUBLISH_LOG, JobFolder, append_log


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    reason: str | None = None
    exit_code: int | None = None
    oom_killed: bool = False

    @classmethod
    def ok(cls) -> Outcome:
        return cls(Kind.OK)


@dataclass
class JobContext:
    """A job being worked on: its request, environment, folder and the engine's services."""

    job_id: str
    request: JobRequest
    env: ComputeEnvironment
    folder: JobFolder
    runner: ContainerRunner
    allow_non_public_ip: bool
    is_cancelled: Callable[[], bool]
    on_container: Callable[[str], object] = lambda _cid: None
    should_yield: Callable[[], bool] = lambda: False  # the engine is shutting down
    fetch_timeout: float = 30.0
    disk_quota: str = "auto"  # TIDEWATER_DISK_QUOTA: loop, poll or auto
    settlement: Any = None  # operator_engine.settlement.Settlement for paid (escrow) jobs
    storage: StorageConfig | None = None  # gateways and RPC URLs; None: url files only
    #: the environment's stored platform credential (``credentialsId``), if any
    registry_credential: Credential | None = None
    #: signs a receipt's facts for a chain id (operator_engine.receipt_writer.Signer); None: no
    #: receipts (no provider key)
    receipt_signer: Callable[[Any, int | None], dict[str, Any]] | None = None
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def chain_id(self) -> int | None:
        return self.request.chain_id

    @property
    def storage_config(self) -> StorageConfig:
        """How this job opens its files (the SSRF switch and timeout always from the job)."""
        base = self.storage or StorageConfig(self.allow_non_public_ip, self.fetch_timeout)
        return replace(base, allow_non_public=self.allow_non_public_ip, timeout=self.fetch_timeout)

    def configure_log(self, text: str) -> None:
        append_log(self.folder.log(CONFIGURE_LOG), text)

    def publish_log(self, text: str) -> None:
        append_log(self.folder.log(PUBLISH_LOG), text)

    @property
    def root(self) -> Path:
        return self.folder.root

"""What every pipeline stage receives, and what it answers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from datastore.jobs import ResultRecord
from operator_engine.backends.base import Backend, JobWorkspace
from operator_engine.credentials import Credential
from operator_engine.lifecycle import Kind
from operator_engine.models import ComputeEnvironment, JobRequest
from operator_engine.storage import StorageConfig
from operator_engine.workspace import CONFIGURE_LOG, PUBLISH_LOG

if TYPE_CHECKING:
    from operator_engine.receipt_writer import Signer
    from operator_engine.settlement import Settlement


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
class StageState:
    """What the stages learn and hand on, for one walk of a job (a resumed walk starts empty)."""

    #: the image reference the backend resolved (provisioning; the container runs it)
    image: str | None = None
    #: bytes of the disk share left once the inputs and algorithm are staged
    disk_left: int | None = None
    #: the algorithm's exit code (run)
    exit_code: int | None = None
    #: the publishable outputs, (name, size) (filtering)
    outputs: list[tuple[str, int]] = field(default_factory=list)
    #: the job's results, outputs then logs (publishing)
    records: list[ResultRecord] = field(default_factory=list)
    #: the removal of a container that ended by itself, going on while the stages after the
    #: run work (run); :meth:`container_gone` waits for it before the job ends
    removal: threading.Thread | None = None

    def container_gone(self) -> None:
        """Wait until the run's container is removed (a job never ends with it still there)."""
        if self.removal is not None:
            self.removal.join()
            self.removal = None


@dataclass
class JobContext:
    """A job being worked on: its request, environment, workspace, the backend of its
    environment's platform and the engine's services."""

    job_id: str
    request: JobRequest
    env: ComputeEnvironment
    workspace: JobWorkspace
    backend: Backend
    allow_non_public_ip: bool
    is_cancelled: Callable[[], bool]
    fetch_timeout: float  # EngineConfig's (one default, in the shell's Settings)
    on_container: Callable[[str], object] = lambda _cid: None
    should_yield: Callable[[], bool] = lambda: False  # the engine is shutting down
    settlement: Settlement | None = None  # paid (escrow) jobs
    storage: StorageConfig | None = None  # gateways and RPC URLs; None: url files only
    #: the environment's stored platform credential (``credentialsId``), if any
    registry_credential: Credential | None = None
    #: signs a receipt's facts for a chain id (operator_engine.receipt_writer.Signer); None: no
    #: receipts (no provider key)
    receipt_signer: Signer | None = None
    #: paid through an escrow lock (fixed before the job was queued); None: ask the settlement
    paid: bool | None = None
    state: StageState = field(default_factory=StageState)

    @property
    def chain_id(self) -> int | None:
        return self.request.chain_id

    @property
    def storage_config(self) -> StorageConfig:
        """How this job opens its files (the SSRF switch and timeout always from the job)."""
        base = self.storage or StorageConfig(self.allow_non_public_ip, self.fetch_timeout)
        return replace(base, allow_non_public=self.allow_non_public_ip, timeout=self.fetch_timeout)

    def configure_log(self, text: str) -> None:
        self.workspace.append_log(CONFIGURE_LOG, text)

    def publish_log(self, text: str) -> None:
        self.workspace.append_log(PUBLISH_LOG, text)

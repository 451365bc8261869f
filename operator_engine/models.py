"""The values that cross the boundary between the provider and the engine.

The provider builds a :class:`JobRequest` from a validated compute request (DDOs resolved,
orders checked, file objects decrypted) and hands it to ``Engine.submit``; the engine answers
with :class:`Job` values, which :meth:`Job.to_ocean` turns into the wire shape clients read.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from operator_engine.lifecycle import StopReason
from operator_engine.statuses import JobStatus, status_text

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"


def unix_text(moment: datetime | None) -> str | None:
    """Unix seconds as a string (the wire form of Ocean job dates), or None."""
    return None if moment is None else str(int(moment.timestamp()))


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class EgressPolicy:
    """What may leave a job as results: at most ``max_bytes`` in at most ``max_files`` files."""

    max_bytes: int = 1024**3
    max_files: int = 1000


@dataclass(frozen=True)
class FreeTier:
    """An environment's free tier (C2D v2 ``freeCompute``): its own pool of resources, its own
    job duration and concurrency limits, no payment. ``require_orders`` (default) still makes
    free jobs on published assets present a valid order of each asset."""

    max_job_duration: int = 60
    max_jobs: int = 1
    cpu_number: int = 1
    ram_gb: float = 1.0
    disk_gb: float = 1.0
    require_orders: bool = True


#: The resources every environment prices and reports, in this order (clients read [0..2]).
RESOURCE_IDS: tuple[str, ...] = ("cpu", "ram", "disk")


@dataclass(frozen=True)
class ComputeEnvironment:
    """Where and how jobs run (docs/protocol.md §11). Field names follow Ocean's env JSON."""

    id: str
    description: str = ""
    cpu_number: int = 1
    cpu_type: str = ""
    ram_gb: float = 1.0
    disk_gb: float = 10.0
    gpu_number: int = 0
    gpu_type: str = ""
    #: explicit GPU device ids (``gpuDevices``) every job of the environment is given
    gpu_devices: tuple[str, ...] = ()
    max_jobs: int = 1
    max_job_duration: int = 3600
    storage_expiry: int = 7 * 24 * 3600
    price_min: float = 0.0
    fee_token: str = ZERO_ADDRESS
    consumer_address: str = ""
    allowed_images: tuple[str, ...] = ()
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    #: Fee token per unit (CPU, GB of RAM, GB of disk) per minute; empty: priced by priceMin.
    prices: tuple[tuple[str, float], ...] = ()
    min_job_duration: int = 0
    free: FreeTier | None = None
    #: For the engine-side environment of a free tier: the id of the environment it belongs to.
    free_of: str | None = None

    #: extra environment variables for the algorithm container (admin ``config.environment``)
    container_env: tuple[tuple[str, str], ...] = ()
    #: stored platform credentials (a registry login for private images), by id
    credentials_id: str = ""
    #: where its jobs run: ``docker`` or ``kubernetes`` (operator_engine.backends)
    platform: str = "docker"
    #: (chain id, token) pairs when ``feeToken`` is an object chain id → token.
    fee_tokens: tuple[tuple[int, str], ...] = ()

    def on_chain(self, chain_id: int) -> ComputeEnvironment:
        """This environment as offered on ``chain_id``: ``fee_token`` is that chain's entry of
        a per-chain ``feeToken`` (else ``fee_token`` as configured).

        >>> env = ComputeEnvironment(id="e", fee_tokens=((8996, "0xA"), (58008, "0xB")))
        >>> env.on_chain(58008).fee_token, env.on_chain(1).fee_token == ZERO_ADDRESS
        ('0xB', True)
        """
        token = dict(self.fee_tokens).get(chain_id)
        return self if token is None else replace(self, fee_token=token)

    def price_of(self, resource: str) -> float:
        """Fee token per unit of ``resource`` per minute (0 when not priced)."""
        return dict(self.prices).get(resource, 0.0)

    def to_ocean(self, current_jobs: int, last_seen: float) -> dict[str, Any]:
        """The env object of ``GET computeEnvironments`` (numbers stay JSON numbers)."""
        return {
            "id": self.id,
            "desc": self.description,
            "cpuType": self.cpu_type,
            "gpuType": self.gpu_type,
            "cpuNumber": self.cpu_number,
            "gpuNumber": self.gpu_number,
            "ramGB": self.ram_gb,
            "diskGB": self.disk_gb,
            "maxJobs": self.max_jobs,
            "currentJobs": current_jobs,
            "maxJobDuration": self.max_job_duration,
            "storageExpiry": self.storage_expiry,
            "priceMin": self.price_min,
            "feeToken": self.fee_token,
            "consumerAddress": self.consumer_address,
            "lastSeen": last_seen,
        }


@dataclass(frozen=True)
class DatasetInput:
    """One dataset of a job: its DDO and the decrypted file objects of the ordered service."""

    did: str
    ddo: dict[str, Any]
    service_id: str
    files: list[dict[str, Any]]
    transfer_tx_id: str | None = None
    userdata: dict[str, Any] | None = None


@dataclass(frozen=True)
class AlgorithmInput:
    """The algorithm: a published asset (``did`` and ``files``) or raw code (``rawcode``)."""

    container: dict[str, Any]
    did: str | None = None
    ddo: dict[str, Any] | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    rawcode: str | None = None
    service_id: str | None = None
    transfer_tx_id: str | None = None
    userdata: dict[str, Any] | None = None
    algocustomdata: dict[str, Any] | None = None


@dataclass(frozen=True)
class JobRequest:
    """A validated compute request. ``agreement_id`` (the first dataset's order tx) is the
    job's Ocean ``agreementId`` and makes ``submit`` idempotent; the rule that each payment
    tx starts at most one job is :class:`Payments`'. ``job_id`` is set when the id had to
    exist before the job (an escrow lock names it); otherwise the store picks one."""

    owner: str
    environment: str
    datasets: list[DatasetInput]
    algorithm: AlgorithmInput
    agreement_id: str | None = None
    expire_timestamp: int | None = None
    job_id: str | None = None
    #: Seconds the algorithm may run, when shorter than the environment's ``maxJobDuration``
    #: (a C2D v2 job runs for the duration it paid for).
    max_duration: int | None = None
    #: the chain of the job's orders (its receipt is signed for it); None: the provider's
    chain_id: int | None = None


@dataclass(frozen=True)
class JobResult:
    """One downloadable result; ``index`` is its position in ``Job.results``."""

    filename: str
    filesize: int
    type: str
    index: int
    sha256: str = ""

    def to_ocean(self) -> dict[str, Any]:
        """Ocean's result entry, plus ``sha256`` so clients can verify what they download."""
        return {
            "filename": self.filename,
            "filesize": self.filesize,
            "type": self.type,
            "index": self.index,
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class Job:
    """A job as the store holds it (the store row is the one truth)."""

    job_id: str
    owner: str
    environment: str
    status: JobStatus
    date_created: datetime
    input_dids: list[str]
    algo_did: str
    date_finished: datetime | None = None
    agreement_id: str | None = None
    expire_timestamp: int | None = None
    stopreq: StopReason = StopReason.NONE
    exit_code: int | None = None
    oom_killed: bool = False
    reason: str | None = None
    results: list[JobResult] = field(default_factory=list)

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    def to_ocean(self) -> dict[str, Any]:
        """The Ocean job object (docs/protocol.md §6) that status, stop and delete return."""
        body: dict[str, Any] = {
            "owner": self.owner,
            "did": self.input_dids[0] if self.input_dids else None,
            "jobId": self.job_id,
            "dateCreated": unix_text(self.date_created),
            "dateFinished": unix_text(self.date_finished),
            "status": int(self.status),
            "statusText": status_text(self.status),
            "results": [r.to_ocean() for r in self.results],
            "inputDID": list(self.input_dids),
            "algoDID": self.algo_did,
            "agreementId": self.agreement_id,
            "expireTimestamp": self.expire_timestamp,
            "environment": self.environment,
            "stopreq": int(self.stopreq),
        }
        if self.exit_code is not None or self.oom_killed:
            body["terminationDetails"] = {"exitCode": self.exit_code, "OOMKilled": self.oom_killed}
        return body

    @cached_property
    def ocean_json(self) -> str:
        """:meth:`to_ocean` as compact JSON (what the provider's ``jsonify`` writes for it),
        encoded once per Job object: the store hands out one Job per unchanged row."""
        return json.dumps(self.to_ocean(), separators=(",", ":"))


@dataclass(frozen=True)
class Payments:
    """The payment transactions (startOrder/reuseOrder tx hashes) a job is started with.

    Each starts at most one job (docs/protocol.md §5): ``Engine.submit(request,
    payments=...)`` records them as consumed with the job. Hashes are lowercased and
    deduplicated, order kept.
    """

    chain_id: int
    tx_ids: tuple[str, ...]

    @classmethod
    def of(cls, chain_id: int, tx_ids: Iterable[str]) -> Payments:
        """``tx_ids`` normalised.

        >>> Payments.of(8996, ["0xAB", "0xab", "0xCD"]).tx_ids
        ('0xab', '0xcd')
        """
        return cls(int(chain_id), tuple(dict.fromkeys(tx.lower() for tx in tx_ids)))

"""The seam between the provider and the job engine: what the routes may ask of an engine.

:class:`EnginePort` is a structural type (``typing.Protocol``): :class:`operator_engine.api.Engine`
implements it without naming it, and mypy checks that it does where :func:`provider.app.create_app`
builds one. Routes reach the engine only through this interface (``Services.engine``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from operator_engine.lifecycle import StopReason

if TYPE_CHECKING:
    from sqlalchemy import Engine as SqlEngine

    from datastore.jobs import JobStore
    from operator_engine.backends.base import BackendRegistry
    from operator_engine.environments import EnvironmentRegistry
    from operator_engine.models import (
        ComputeEnvironment,
        Job,
        JobRequest,
        JobResult,
        Payments,
    )
    from operator_engine.settlement import Settlement
    from operator_engine.worker import Services as WorkerServices


class EnginePort(Protocol):
    """The engine facade the provider calls (see :class:`operator_engine.api.Engine`)."""

    @property
    def db(self) -> SqlEngine:
        """The shared SQL store (the provider's nonces, tokens and index live there too)."""

    @property
    def store(self) -> JobStore:
        """The job store (read by the metrics' scrape)."""

    @property
    def registry(self) -> EnvironmentRegistry:
        """The compute environments (the admin API and the fee-token rules edit it)."""

    @property
    def backends(self) -> BackendRegistry:
        """The backends by platform (the admin API checks an environment's health with them)."""

    @property
    def services(self) -> WorkerServices:
        """What the workers share (job folders: the live algorithm log)."""

    @property
    def settlement(self) -> Settlement:
        """Escrow locks and claims of paid (C2D v2) jobs."""

    # -- jobs ----------------------------------------------------------------------------------
    def submit(self, request: JobRequest, *, payments: Payments | None = None) -> Job:
        """Record a job (once per payment set) and wake a worker."""

    def consumed_orders(self, chain_id: int, tx_ids: list[str]) -> set[str]:
        """Which of ``tx_ids`` (lowercased) already started a job on ``chain_id``."""

    def get(self, job_id: str) -> Job | None: ...

    def find(
        self, owner: str, *, job_id: str | None = None, did: str | None = None
    ) -> list[Job]: ...

    def stop(
        self,
        job_id: str,
        *,
        stopreq: StopReason = StopReason.OWNER,
        wait: float = 10.0,
        reason: str | None = None,
    ) -> Job:
        """Stop the job at any stage (raises ``JobNotFound``)."""

    def delete(self, job_id: str) -> Job:
        """Stop if live, then remove the job (raises ``JobNotFound``)."""

    def open_result(self, job_id: str, index: int) -> tuple[Path, JobResult]:
        """The stored file of result ``index`` (raises ``ResultNotFound``)."""

    # -- environments --------------------------------------------------------------------------
    def environments(self) -> list[ComputeEnvironment]: ...

    def primary_environment(self) -> ComputeEnvironment | None: ...

    def environment(self, env_id: str) -> ComputeEnvironment | None: ...

    def current_jobs(self) -> dict[str, int]: ...

    # -- workers -------------------------------------------------------------------------------
    def start(self, workers: int) -> None:
        """Run ``workers`` worker threads in this process (``tidewater serve``)."""

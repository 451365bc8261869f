"""The engine facade the provider calls: submit, look up, stop, delete, results, environments.
Embedded workers (``start``/``shutdown``) and synchronous processing (``run_until_idle``) come
from :class:`operator_engine.threads.WorkerThreads`."""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import uuid
from pathlib import Path

from sqlalchemy import Engine as SqlEngine

from datastore.engine import make_engine, private_dir
from datastore.jobs import JobStore, TransitionError
from datastore.migrate import SchemaError, upgrade
from operator_engine import file_objects
from operator_engine.backends.base import (
    DEFAULT_PLATFORM,
    Backend,
    BackendError,
    BackendNotConfigured,
    BackendRegistry,
    build,
)
from operator_engine.config import EngineConfig
from operator_engine.credentials import CredentialStore
from operator_engine.environments import EnvironmentRegistry, gpu_share
from operator_engine.lifecycle import Stage, StopReason
from operator_engine.models import ComputeEnvironment, Job, JobRequest, JobResult, Payments
from operator_engine.receipt_writer import provider_signer
from operator_engine.settlement import Settlement
from operator_engine.settlement_wiring import default_settlement
from operator_engine.statuses import JobStatus
from operator_engine.threads import SHUTDOWN_REASON as SHUTDOWN_REASON  # re-exported
from operator_engine.threads import WorkerThreads
from operator_engine.wakeup import WakeListener, WakeSignal, nudge
from operator_engine.worker import Services, Worker

log = logging.getLogger(__name__)


def engine_scope(config: EngineConfig) -> str:
    """A stable id of this engine's store and data dir (labels its containers)."""
    from sqlalchemy.engine import make_url

    url = make_url(config.db_url).render_as_string(hide_password=True)
    text = f"{url}|{Path(config.data_dir).resolve()}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class EngineError(Exception):
    """Base of the engine's errors."""


class UnknownEnvironment(EngineError):
    pass


class EnvironmentUnavailable(EngineError):
    """The environment exists but takes no new jobs (draining, errored or being created)."""


class InvalidJobRequest(EngineError):
    pass


class JobNotFound(EngineError):
    pass


class ResultNotFound(EngineError):
    pass


class Engine(WorkerThreads):
    """One engine: a store, its backends by platform and (optionally) worker threads."""

    def __init__(
        self,
        config: EngineConfig,
        db: SqlEngine,
        backends: Backend | BackendRegistry,
        *,
        settlement: Settlement | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self.store = JobStore(db)
        if not isinstance(backends, BackendRegistry):
            backends = BackendRegistry([backends], config)
        #: The engine's backends by platform (environments name theirs).
        self.backends = backends
        #: Names this engine's store and data dir: containers' label, wake-up channel.
        self.wake_scope = engine_scope(config)
        backends.bind(scope=self.wake_scope, data_dir=Path(config.data_dir))
        self.registry = EnvironmentRegistry(
            config.environments_file, self.store, platform_unavailable=backends.unavailable
        )
        keys = config.provider_keys
        #: Escrow locks and claims of paid (C2D v2) jobs (the provider locks through it).
        self.settlement: Settlement = settlement or default_settlement(config, db)
        self.services = Services(
            store=self.store,
            backends=backends,
            registry=self.registry,
            data_dir=Path(config.data_dir),
            allow_non_public_ip=config.allow_non_public_ip,
            storage=config.storage,
            lease_seconds=config.lease_seconds,
            fetch_timeout=config.fetch_timeout,
            settlement=self.settlement,
            credentials=CredentialStore(db, config.credentials_key),
            receipt_signer=provider_signer(keys.get(0), {c: k for c, k in keys.items() if c}),
        )
        self._stopping = self.services.stopping
        self.poll_seconds = config.poll_seconds
        self.sweep_seconds = config.sweep_seconds
        self._wake = WakeSignal()
        self._listener: WakeListener | None = None
        self._cut_short = threading.Event()
        self._recovered: queue.SimpleQueue[tuple[str, JobStatus, Stage, str]] = queue.SimpleQueue()
        self.services.hand_off = self._hand_off
        self._threads: list[threading.Thread] = []
        self._workers: list[Worker] = []
        self._sync_worker: Worker | None = None

    @classmethod
    def from_config(
        cls,
        config: EngineConfig,
        *,
        backend: Backend | BackendRegistry | None = None,
        platform: str = DEFAULT_PLATFORM,
    ) -> Engine:
        """Build the store (schema upgraded, see :func:`datastore.migrate.upgrade`) and the
        backend of ``platform`` from ``config`` unless ``backend`` (or a registry of them) is
        given; other platforms' backends are built from ``config`` when first needed."""
        private_dir(Path(config.data_dir))
        db = make_engine(config.db_url)
        try:
            upgrade(db)
        except SchemaError as exc:
            raise EngineError(str(exc)) from None
        if backend is None:
            try:
                backend = build(platform, config)
            except BackendError as exc:
                raise EngineError(str(exc)) from exc
        engine = cls(config, db, backend)
        engine.check_file_environments()
        return engine

    @property
    def backend(self) -> Backend:
        """The backend this engine was built with (the first one given)."""
        return next(iter(self.backends))

    def check_file_environments(self) -> None:
        """Refuse file environments whose platform has no backend here, or that ask for GPUs
        their backend cannot give (a clear error at load, never a job stuck at 40)."""
        for env in self.registry.file_envs():
            try:
                backend = self.backends.get(env.platform)
            except BackendNotConfigured as exc:
                raise EngineError(f"compute environment {env.id}: {exc}") from exc
            reason = backend.gpu_support() if gpu_share(env)[0] > 0 else None
            if reason is not None:
                raise EngineError(f"compute environment(s) {env.id} ask for GPUs, but {reason}")

    # -- jobs --------------------------------------------------------------------------------

    def submit(self, request: JobRequest, *, payments: Payments | None = None) -> Job:
        """Queue a job (status 1).

        ``payments`` (the V4 path's order txs) are consumed with the job: re-sending exactly
        these payments returns the job they started; any other use raises
        :class:`OrderAlreadyUsed`, even after that job was deleted. Without ``payments`` the
        same ``agreement_id`` returns the job it started."""
        entry = self.registry.entries().get(request.environment)
        if entry is None:
            raise UnknownEnvironment(f"unknown compute environment {request.environment!r}")
        if not request.datasets:
            raise InvalidJobRequest("a job needs at least one dataset")
        if request.algorithm.rawcode is None and not request.algorithm.files:
            raise InvalidJobRequest("the algorithm needs raw code or files")
        algo_did = request.algorithm.did or "raw"
        existing = None
        if payments:
            existing = self.store.job_paid_by(payments)
        elif request.agreement_id is not None:
            existing = self.store.by_agreement(request.agreement_id)
        if existing is not None:
            return existing
        if not entry.accepts_jobs:
            raise EnvironmentUnavailable(
                f"compute environment {request.environment!r} takes no new jobs ({entry.status})"
            )
        job_id = request.job_id or uuid.uuid4().hex
        if request.job_id is not None:
            known = self.store.get(job_id)  # an id chosen before submit: never overwrite it
            if known is not None:
                return known
        folder = self.services.folder(job_id)
        file_objects.save(folder, request)  # before the row: a claimed job finds them
        try:
            job, created = self.store.insert(
                request, algo_did=algo_did, payments=payments, job_id=job_id
            )
        except BaseException:
            if self.store.row(job_id) is None:
                folder.remove()
            raise
        if not created and job.job_id != job_id:
            folder.remove()  # another submit made the job: these file objects are not used
        if created:
            # admin lastUsed survives job deletion
            self.store.environments.touch(request.environment)
        self._wake.set()
        if not self._threads:  # an API process: the engine process may be idle-waiting
            nudge(self.wake_scope)
        return job

    def consumed_orders(self, chain_id: int, tx_ids: list[str]) -> set[str]:
        """Which of ``tx_ids`` (lowercased) already started a job on ``chain_id``."""
        return self.store.consumed(chain_id, tx_ids)

    def get(self, job_id: str) -> Job | None:
        return self.store.get(job_id)

    def find(self, owner: str, *, job_id: str | None = None, did: str | None = None) -> list[Job]:
        return self.store.find(owner, job_id=job_id, did=did)

    def stop(
        self,
        job_id: str,
        *,
        stopreq: StopReason = StopReason.OWNER,
        wait: float = 10.0,
        reason: str | None = None,
    ) -> Job:
        """Stop at any stage: the job ends at 7 with ``stopreq`` (and ``reason``, else the
        stop reason's text); its container is killed and the logs so far stay as results.
        Stopping a finished job changes nothing."""
        job = self.store.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id}")
        if job.is_terminal:
            return job
        if reason is None:
            reason = stopreq.text
        try:
            previous = self.store.transition(
                job_id, None, JobStatus.STOPPED, detail=reason, stopreq=int(stopreq), reason=reason
            )
        except TransitionError:
            return self.store.get(job_id) or job
        self._kill(job_id)
        if previous is not JobStatus.WARMING_UP:
            self._await_release(job_id, wait)
        else:
            self._settle_now(job_id)  # no worker will: release the lock now
        return self.store.get(job_id) or job

    def delete(self, job_id: str) -> Job:
        """Stop the job if live, then remove its containers, files and rows. Returns the job
        as it was just before removal."""
        job = self.store.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id}")
        if not job.is_terminal:
            job = self.stop(job_id, wait=5.0)
        self._kill(job_id, remove=True)
        self._settle_now(job_id)  # before its events (the run time) are deleted
        self.services.folder(job_id).remove()
        self.store.delete(job_id)
        return job

    def _settle_now(self, job_id: str) -> None:
        """Settle a paid job's escrow lock now; trouble is logged (the sweep retries)."""
        try:
            if self.settlement.is_paid(job_id):
                self.settlement.settle(job_id)
        except Exception:
            log.warning("job %s: escrow settlement postponed", job_id, exc_info=True)

    def open_result(self, job_id: str, index: int) -> tuple[Path, JobResult]:
        """The file of result ``index`` (its position in ``results``; an absolute path with no
        symlink in it) and its entry."""
        found = self.store.result_path(job_id, index)
        if found is None:
            raise ResultNotFound(f"job {job_id} has no result {index}")
        rel, result = found
        root = self.services.folder(job_id).root
        path = root / rel
        resolved = path.resolve()
        if path.is_symlink() or not resolved.is_file() or root not in resolved.parents:
            raise ResultNotFound(f"result {index} of job {job_id} is no longer stored")
        return resolved, result

    # -- environments ------------------------------------------------------------------------

    def environments(self) -> list[ComputeEnvironment]:
        """Environments that take jobs now (draining and errored ones are not offered)."""
        return [e.env for e in self.registry.entries().values() if e.accepts_jobs]

    def primary_environment(self) -> ComputeEnvironment | None:
        """The environment a job that names none runs in (see ``EnvironmentRegistry``)."""
        entry = next(iter(self.registry.entries().values()), None)
        return entry.env if entry is not None and entry.primary else None

    def environment(self, env_id: str) -> ComputeEnvironment | None:
        entry = self.registry.entries().get(env_id)
        return entry.env if entry is not None and entry.accepts_jobs else None

    def current_jobs(self) -> dict[str, int]:
        """Live (queued and running) jobs per environment id."""
        return self.store.live_counts()

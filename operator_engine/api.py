"""The engine facade the provider calls: submit, look up, stop, delete, results, environments,
and embedded workers (``start``/``shutdown``) or synchronous processing (``run_until_idle``)."""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import Engine as SqlEngine

from operator_engine import file_objects
from operator_engine.config import EngineConfig
from operator_engine.credentials import CredentialStore
from operator_engine.db import make_engine, private_dir
from operator_engine.environments import EnvironmentRegistry, gpu_share
from operator_engine.metrics import WORKERS
from operator_engine.models import ComputeEnvironment, Job, JobRequest, JobResult, Payments
from operator_engine.receipt_writer import provider_signer
from operator_engine.runner import ContainerRunner, RunnerError
from operator_engine.settlement import Settlement, default_settlement
from operator_engine.statuses import TERMINAL, JobStatus
from operator_engine.store import JobStore, TransitionError
from operator_engine.wakeup import WakeListener, nudge
from operator_engine.worker import Services, Worker, worker_is_dead

log = logging.getLogger(__name__)

#: Why a job whose algorithm still ran when the engine stopped ended at 7.
SHUTDOWN_REASON = "stopped: the provider shut down while the algorithm ran"
#: How long a stop waits for jobs that have not run yet to reach their next stage boundary.
PRE_RUN_GRACE = 2.0


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


class Engine:
    """One engine: a store, a container runner and (optionally) worker threads."""

    def __init__(
        self,
        config: EngineConfig,
        db: SqlEngine,
        runner: ContainerRunner,
        *,
        settlement: Settlement | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self.store = JobStore(db)
        self.runner = runner
        #: Names this engine's store and data dir: containers' label, wake-up channel.
        self.wake_scope = engine_scope(config)
        if getattr(runner, "scope", None) is None:
            runner.scope = self.wake_scope
        self.registry = EnvironmentRegistry(config.environments_file, self.store)
        keys = config.provider_keys
        self.services = Services(
            store=self.store,
            runner=runner,
            registry=self.registry,
            data_dir=Path(config.data_dir),
            allow_non_public_ip=config.allow_non_public_ip,
            storage=config.storage,
            lease_seconds=config.lease_seconds,
            fetch_timeout=config.fetch_timeout,
            disk_quota=config.disk_quota,
            settlement=settlement or default_settlement(config, db),
            credentials=CredentialStore(db, config.credentials_key),
            receipt_signer=provider_signer(keys.get(0), {c: k for c, k in keys.items() if c}),
        )
        #: Escrow locks and claims of paid (C2D v2) jobs (the provider locks through it).
        self.settlement: Settlement = self.services.settlement
        self._stopping = self.services.stopping
        self.poll_seconds = config.poll_seconds
        self.sweep_seconds = config.sweep_seconds
        self._wake = threading.Event()
        self._listener: WakeListener | None = None
        self._cut_short = threading.Event()
        self._recovered: queue.SimpleQueue[tuple[str, JobStatus, int, str]] = queue.SimpleQueue()
        self.services.hand_off = self._hand_off
        self._threads: list[threading.Thread] = []
        self._workers: list[Worker] = []
        self._sync_worker: Worker | None = None

    @classmethod
    def from_config(cls, config: EngineConfig, *, runner: ContainerRunner | None = None) -> Engine:
        """Build the store (tables created) and a Docker runner unless ``runner`` is given."""
        private_dir(Path(config.data_dir))
        db = make_engine(config.db_url)
        JobStore(db).create_tables()
        if runner is None:
            from operator_engine.docker_runner import DockerRunner

            try:
                runner = DockerRunner(pull=config.pull_images)
            except RunnerError as exc:
                raise EngineError(str(exc)) from exc
        engine = cls(config, db, runner)
        engine.check_gpus()
        return engine

    def check_gpus(self) -> None:
        """Refuse GPU environments the runner cannot serve (a clear error at load, never a
        job stuck at 40)."""
        wanting = [e.id for e in self.registry.file_envs() if gpu_share(e)[0] > 0]
        if not wanting:
            return
        reason = self.runner.gpu_support()
        if reason is not None:
            raise EngineError(
                f"compute environment(s) {', '.join(wanting)} ask for GPUs, but {reason}"
            )

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
            self.store.touch_env(request.environment)  # admin lastUsed survives job deletion
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
        self, job_id: str, *, stopreq: int = 1, wait: float = 10.0, reason: str | None = None
    ) -> Job:
        """Stop at any stage: the job ends at 7 with ``stopreq`` (and ``reason``, else one
        naming the owner or the time limit); its container is killed and the logs so far stay
        as results. Stopping a finished job changes nothing."""
        job = self.store.get(job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id}")
        if job.is_terminal:
            return job
        if reason is None:
            reason = "stopped by its owner" if stopreq == 1 else "stopped: time limit reached"
        try:
            previous = self.store.transition(
                job_id, None, JobStatus.STOPPED, detail=reason, stopreq=stopreq, reason=reason
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

    def _kill(self, job_id: str, *, remove: bool = False) -> None:
        try:
            for cid, _job in self.runner.containers(job_id):
                self.runner.remove(cid) if remove else self.runner.kill(cid)
        except RunnerError:
            log.warning("cannot reach the container backend for job %s", job_id, exc_info=True)

    def _await_release(self, job_id: str, wait: float) -> None:
        """Give the job's worker a moment to publish the logs of a stopped job; a dead worker's
        job is cleaned up here."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            row = self.store.row(job_id)
            if row is None or row.worker_id is None:
                return
            if worker_is_dead(row, self.services.lease_seconds):
                break
            time.sleep(0.05)
        helper = self._sync_worker or Worker(self.services, 99)
        helper.cleanup_interrupted(job_id)
        if helper is not self._sync_worker:
            helper.retire()

    def open_result(self, job_id: str, index: int) -> tuple[Path, JobResult]:
        """The file of result ``index`` (its position in ``results``) and its entry."""
        found = self.store.result_path(job_id, index)
        if found is None:
            raise ResultNotFound(f"job {job_id} has no result {index}")
        rel, result = found
        root = self.services.folder(job_id).root
        path = root / rel
        if path.is_symlink() or not path.is_file() or root not in path.resolve().parents:
            raise ResultNotFound(f"result {index} of job {job_id} is no longer stored")
        return path, result

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

    # -- workers -----------------------------------------------------------------------------

    def start(self, workers: int) -> None:
        """Run ``workers`` background worker threads in this process and return at once: the
        first one sweeps (recovers abandoned jobs) before it claims, so a restart serves its API
        while recovered jobs run."""
        self._stopping.clear()
        self._cut_short.clear()
        self._listener = WakeListener(self.wake_scope, self._wake.set)
        self._listener.start()
        for n in range(workers):
            worker = Worker(self.services, n)
            thread = threading.Thread(
                target=self._loop, args=(worker, n == 0), name=f"tidewater-worker-{n}", daemon=True
            )
            self._workers.append(worker)
            self._threads.append(thread)
            thread.start()

    def _safe_sweep(self, worker: Worker) -> None:
        try:
            worker.sweep()
        except Exception:
            log.exception("sweep failed")

    def _hand_off(self, job_id: str, status: JobStatus, start: int, holder: str) -> bool:
        """Queue a job the sweep recovered for the next free worker thread (so recovered jobs
        run side by side and the sweep goes on); False without threads."""
        if not self._threads or self._stopping.is_set():
            return False
        self._recovered.put((job_id, status, start, holder))
        self._wake.set()
        return True

    def _run_recovered(self, worker: Worker) -> bool:
        try:
            job_id, status, start, holder = self._recovered.get_nowait()
        except queue.Empty:
            return False
        if holder != worker.id and not self.store.take_over(job_id, holder, worker.id):
            return True  # stopped, deleted or taken meanwhile: nothing to run
        worker.process(job_id, status, start)
        return True

    def _loop(self, worker: Worker, sweeper: bool) -> None:
        WORKERS.inc()
        try:
            self._work(worker, sweeper)
        finally:
            WORKERS.dec()

    def _work(self, worker: Worker, sweeper: bool) -> None:
        next_sweep = time.monotonic()  # the sweeper's first act: recover what was abandoned
        while not self._stopping.is_set():
            try:
                if self._run_recovered(worker) or worker.step():
                    self._wake.set()  # capacity freed: let the others look
                    continue
            except Exception:
                log.exception("worker %s: claim failed", worker.id)
            if sweeper and time.monotonic() >= next_sweep:
                self._safe_sweep(worker)
                next_sweep = time.monotonic() + self.sweep_seconds
            self._wake.wait(self.poll_seconds)
            self._wake.clear()

    def shutdown(self, grace: float = 30.0) -> dict[str, str]:
        """Stop the worker threads; returns (and logs) what became of each job they held.

        No job is claimed any more. A job that has not run yet stops at its next stage boundary
        (10-30, lease released; waited for up to :data:`PRE_RUN_GRACE` s) and the next engine
        resumes it; a job past its run (50, 60) finishes. A running algorithm (40) gets
        ``grace`` seconds (none after :meth:`cut_short`) to finish; then its container is
        stopped and the job ends at 7 with the reason
        :data:`SHUTDOWN_REASON` and its logs as results. A stage still busy after that (a slow
        download) is left to the process exit: its lease dies with the process and the next
        engine resumes the job."""
        self._stopping.set()
        self._wake.set()
        mine = {worker.id for worker in self._workers}
        held = self._held(mine)
        if held:
            log.info(
                "engine stopping with %d job(s) in progress; running algorithms get %.0f s",
                len(held),
                grace,
            )
        began = time.monotonic()
        while self._alive() and not self._cut_short.is_set():
            waited = time.monotonic() - began
            if waited >= grace:
                break
            now_held = self._held(mine)
            held = {**now_held, **held}  # first seen status kept for the report
            if waited >= min(grace, PRE_RUN_GRACE) and all(
                s < JobStatus.RUNNING for s in now_held.values()
            ):
                break  # only jobs that have not run are left: they resume, no need to wait
            time.sleep(0.1)
        held = {**self._held(mine), **held}
        stopped = set()
        for job_id, status in self._held(mine).items():
            if status is JobStatus.RUNNING and self._stop_at_shutdown(job_id):
                stopped.add(job_id)
        # Idle threads leave within a poll; one still inside a stage (a slow download) is left
        # to the process exit: its job keeps its status and the next engine resumes it.
        release_by = time.monotonic() + 1.0
        for thread in self._threads:
            thread.join(max(release_by - time.monotonic(), 0))
        for worker in self._workers:
            worker.retire()
        self._threads.clear()
        self._workers.clear()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._sync_worker is not None:
            self._sync_worker.retire()
            self._sync_worker = None
        return self._report(held, stopped)

    def cut_short(self) -> None:
        """Make a running :meth:`shutdown` stop running algorithms now instead of waiting."""
        self._cut_short.set()

    def _alive(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def _held(self, workers: set[str]) -> dict[str, JobStatus]:
        try:
            rows = self.store.in_flight_rows()
        except Exception:  # a store outage must not keep the process from stopping
            log.warning("cannot list the jobs in progress", exc_info=True)
            return {}
        return {row.job_id: JobStatus(row.status) for row in rows if row.worker_id in workers}

    def _stop_at_shutdown(self, job_id: str) -> bool:
        """End a job whose algorithm is still running at 7, container stopped, logs kept."""
        try:
            self.store.transition(
                job_id,
                JobStatus.RUNNING,
                JobStatus.STOPPED,
                detail=SHUTDOWN_REASON,
                reason=SHUTDOWN_REASON,
            )
        except TransitionError:
            return False  # it moved on by itself meanwhile
        self._kill(job_id)
        self._await_release(job_id, 10.0)
        return True

    def _report(self, held: dict[str, JobStatus], stopped: set[str]) -> dict[str, str]:
        outcomes: dict[str, str] = {}
        for job_id, was in held.items():
            row = self.store.row(job_id)
            if row is None:
                outcome = "deleted"
            elif job_id in stopped:
                outcome = f"stopped at shutdown: status 7 ({SHUTDOWN_REASON}), container removed"
            elif JobStatus(row.status) in TERMINAL:
                outcome = f"ended at status {row.status} before the shutdown"
            else:
                outcome = f"left at status {row.status}: it resumes when an engine starts"
            outcomes[job_id] = outcome
            log.info("job %s (at %d when the stop began): %s", job_id, int(was), outcome)
        return outcomes

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run_until_idle(self, timeout: float = 120.0) -> int:
        """Process queued jobs in the calling thread until none is left that could run (tests).
        Returns how many jobs this call ran; raises TimeoutError past ``timeout``."""
        if self._sync_worker is None:
            self._sync_worker = Worker(self.services, 1000)
            self._safe_sweep(self._sync_worker)
        deadline = time.monotonic() + timeout
        ran = 0
        while True:
            if self._sync_worker.step():
                ran += 1
                continue
            if not self._has_pending_work():
                return ran
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs still pending after {timeout}s")
            time.sleep(0.05)

    def _has_pending_work(self) -> bool:
        schedulable = self.services.schedulable_envs()
        live = {int(s) for s in JobStatus if s not in TERMINAL}
        for job_id in self.store.job_ids([JobStatus(s) for s in live]):
            row = self.store.row(job_id)
            if row is not None and row.environment in schedulable:
                return True
        return False

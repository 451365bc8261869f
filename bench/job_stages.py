"""What ``bench/job_overhead.py``'s queue measures besides the rate: where a worker's time goes
per job, the Docker API calls a job makes, and a gate that pauses the engine's claims so the
engine and the ``docker run`` baselines can take turns on the shared machine.

Nothing here changes what the engine does: :class:`TimedDockerBackend` is the real Docker
backend, timing its calls and counting its HTTP requests to the daemon; the stages' own times
come from the engine's Prometheus histogram (``tidewater_job_stage_seconds``).
"""

from __future__ import annotations

import re
import resource
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from prometheus_client import REGISTRY

from operator_engine.backends.base import ContainerSpec, ExitInfo, RunArea
from operator_engine.backends.docker import DockerBackend
from operator_engine.worker import Services

#: the pipeline's stages as the engine's histogram names them, in walking order
STAGES = ("configure", "provision", "run", "filter_outputs", "publish")
_ID = re.compile(r"/[0-9a-f]{64}(?=/|$)")


class TimedDockerBackend(DockerBackend):
    """The Docker backend, timing each container call and counting the daemon requests."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seconds: defaultdict[str, float] = defaultdict(float)
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        for client in (self.api, self._stream):
            client.request = self._counting(client.request)  # type: ignore[method-assign]

    def _counting(self, send: Callable[..., Any]) -> Callable[..., Any]:
        def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            path = _ID.sub("/{id}", url.split("localhost", 1)[-1].split("?", 1)[0])
            path = re.sub(r"^/v[\d.]+", "", path)
            with self._lock:
                self.requests[f"{method} {path}"] += 1
            return send(method, url, *args, **kwargs)

        return request

    @contextmanager
    def _timed(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            with self._lock:
                self.seconds[name] += time.perf_counter() - began

    def reset(self) -> None:
        with self._lock:
            self.seconds.clear()
            self.requests.clear()

    def resolve_image(self, *args: Any, **kwargs: Any) -> str:
        with self._timed("image"):
            return super().resolve_image(*args, **kwargs)

    def start(self, spec: ContainerSpec, area: RunArea) -> str:
        with self._timed("start"):
            return super().start(spec, area)

    def follow_logs(self, container_id: str, sink: BinaryIO, limit: int) -> None:
        with self._timed("running"):
            super().follow_logs(container_id, sink, limit)

    def wait(self, container_id: str) -> ExitInfo:
        with self._timed("wait"):
            return super().wait(container_id)

    def remove(self, container_id: str) -> None:
        with self._timed("remove"):
            super().remove(container_id)


def stage_seconds() -> dict[str, float]:
    """Seconds spent so far in each pipeline stage, all jobs of this process together."""
    return {
        stage: REGISTRY.get_sample_value("tidewater_job_stage_seconds_sum", {"stage": stage}) or 0.0
        for stage in STAGES
    }


class ClaimGate:
    """Lets the engine's ``workers`` claim only ``allow(n)`` jobs at a time: a worker asking
    for work past that waits here (no job held, no CPU) until the next :meth:`allow`. A worker
    asks again only once its job has ended, so all of them waiting here means the turn is
    over (:meth:`wait_idle`)."""

    def __init__(self, services: Services, workers: int) -> None:
        self._envs = services.schedulable_envs
        self._workers = workers
        self._cond = threading.Condition()
        self._permits = 0
        self._waiting = 0
        services.schedulable_envs = self._gated  # type: ignore[method-assign]

    def _gated(self) -> dict[str, Any]:
        with self._cond:
            self._waiting += 1
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._permits > 0)
            self._waiting -= 1
            self._permits -= 1
        return self._envs()

    def allow(self, claims: int) -> None:
        with self._cond:
            self._permits += claims
            self._cond.notify_all()

    def wait_idle(self) -> None:
        """Until every permit is used and every worker is back, waiting for the next."""
        with self._cond:
            self._cond.wait_for(lambda: self._permits == 0 and self._waiting == self._workers)


def cpu_seconds() -> tuple[float, float]:
    """(this process, its children) user + system CPU seconds so far."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def breakdown(
    backend: TimedDockerBackend,
    stages: dict[str, float],
    jobs: int,
    worker_seconds: float,
    raw_seconds_per_run: float,
) -> str:
    """The per-job table: a worker's wall time by stage and Docker call, ms per job."""
    ms = {k: 1000 * v / jobs for k, v in backend.seconds.items()}
    staged = {k: 1000 * v / jobs for k, v in stages.items()}
    docker_in_run = sum(ms.get(k, 0.0) for k in ("start", "running", "wait"))
    total = 1000 * worker_seconds / jobs
    rows = [
        ("configure: the job folder", staged["configure"]),
        ("provision: image check (1 inspect), input fetch, algorithm", staged["provision"]),
        ("  of which the image check", ms.get("image", 0.0)),
        ("run: create + attach + start (disk share made meanwhile)", ms.get("start", 0.0)),
        ("run: the container running to its end", ms.get("running", 0.0)),
        ("run: its exit (1 inspect; a wait if still running)", ms.get("wait", 0.0)),
        ("run: disk share release (copy out), log, rest", staged["run"] - docker_in_run),
        ("  (removing the container, while the next stages go on)", ms.get("remove", 0.0)),
        ("filter outputs", staged["filter_outputs"]),
        ("publish: hash the results", staged["publish"]),
        ("outside stages: claim, 5 transactions, lease, receipt", total - sum(staged.values())),
    ]
    lines = [f"  {'where a worker thread spends a job':<56} {'ms/job':>8}"]
    lines += [f"  {name:<56} {value:8.1f}" for name, value in rows]
    lines.append(f"  {'total per job and worker (2 workers)':<56} {total:8.1f}")
    raw_ms = raw_seconds_per_run * 1000
    lines.append(f"  {'a `docker run` at the same parallelism, per run':<56} {raw_ms:8.1f}")
    calls = sorted(backend.requests.items(), key=lambda item: -item[1])
    per_job = sum(n for _call, n in calls) / jobs
    lines.append(f"  Docker API calls per job: {per_job:.2f}")
    lines += [f"    {call:<40} {n / jobs:5.2f}" for call, n in calls]
    return "\n".join(lines)
